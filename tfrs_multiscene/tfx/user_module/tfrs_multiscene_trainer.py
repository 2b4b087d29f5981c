"""TFX Trainer module file: ``Trainer(module_file=<this file>)``.

TFX 1.21 (``tfx/components/util/udf_utils.py``: ``package_user_module_file``) packages every
``.py`` file of the module file's directory (``__init__.py`` excluded) as *top-level* modules
of an ephemeral wheel and imports this one as ``tfrs_multiscene_trainer`` from that wheel
(``import_utils.import_func_from_module``), not as part of this package. So the directory
holds only this file, its name is unique, and it imports nothing relative: the training
code is ``tfrs_multiscene.tfx.trainer``, installed in the environment that runs the Trainer.
"""

from tfrs_multiscene.tfx.trainer import run_fn

__all__ = ["run_fn"]
