"""Remote-sensing scene classification (papers 3 and 4): backbone benchmark, multi-level attention,
teacher-student distillation and int8 TFLite export, on folder-per-class image data sets."""
