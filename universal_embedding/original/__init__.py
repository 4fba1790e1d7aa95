"""Files and field names of the original UnED code: its config fields translated onto ours
(`config_fields`, `field_translation`), its eight ICCV config files (`iccv_configs/`), its
msgpack training checkpoints (`checkpoint`), their parameter names (`params`), a model from its
workdir (`workdir`) and its descriptor and results files (`descriptor_files`)."""
