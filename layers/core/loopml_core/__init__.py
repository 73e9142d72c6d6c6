"""LoopML's shared core: settings, domain models, the registry, and adapters for AWS and their in-memory fakes.

Shipped to Lambda as the `core` layer. Modules that need heavy libraries (pandas, scikit-learn, onnxruntime) live in
their own modules so that importing this package stays light.
"""
