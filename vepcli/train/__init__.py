"""Training: one engine (`engine`) for pretraining and fine-tuning, and pretraining by masked-LM (Caduceus)
or next-token prediction (the hybrid).

`vepcli pretrain` calls `vepcli.train.pretrain.pretrain`, a task on the engine; `vepcli finetune` runs
`vepcli.finetune.loop`, another. Each module here does one job and can be used and tested alone.
"""
