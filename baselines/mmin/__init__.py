"""MMIN (Zhao, Li, Jin, ACL 2021) as a subpackage: ``config`` (the frozen config), ``networks`` (encoders,
cascade residual autoencoder, classifier, the unregistered teacher), ``loop`` (the two stages' training loop),
``model`` (the registered method). Importing the package registers ``mmin``."""

from baselines.mmin import model  # noqa: F401
