"""The TFX Trainer ``module_file`` lives alone in this directory: see ``tfrs_multiscene_trainer``."""
