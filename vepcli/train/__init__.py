"""Training Caduceus: one engine (`engine`) for pretraining and fine-tuning, and masked-LM pretraining.

`vepcli pretrain` calls `vepcli.train.pretrain.pretrain`, a task on the engine; `vepcli finetune` runs
`vepcli.finetune.loop`, another. Each module here does one job and can be used and tested alone.
"""
