#!/usr/bin/env python3
"""CDK entry point (`cdk.json` runs it); the app itself is built by `infra.cdk.app_factory`."""

from infra.cdk.app_factory import create_app

if __name__ == "__main__":
    app, _stack = create_app()
    app.synth()
