"""Masked-LM pretraining of Caduceus: window sampling, masking, optimiser, the training loop.

`vepcli pretrain` calls `vepcli.train.loop.pretrain`; each module here does one job and can be
used and tested alone.
"""
