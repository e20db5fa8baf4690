"""Experiment configs: each file's `get_config(variant)` returns an ml_collections ConfigDict.

Installed with gan_jax, so `gan-jax-launch --config <name>[:<variant>]` finds them from any folder (see
gan_jax.config_files); they import each other as `experiments.<name>`.
"""
