"""The embedded sandbox: an AWS look-alike on loopback for one environment of the plan.

Parts, each its own process started by :mod:`promoter.sandbox.manager`:

- ``moto_server``: moto's server under the environment's account id, with CloudWatch percentile statistics
  patched in;
- ``lambda_front``: the Lambda API, forwarded to moto, with ``Invoke`` executed locally;
- ``api_front``: the API Gateway look-alike that serves the campaigns API with Cognito bearer tokens.

:mod:`promoter.sandbox.seed` creates what Terraform and the dependency projects would have created.
"""
