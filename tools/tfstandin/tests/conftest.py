import sys
from pathlib import Path

# the stand-in is a folder of the repository, not an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
