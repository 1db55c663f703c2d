"""Read: files, directories, stdin and s3:// / gs:// objects into lines that know their `file:line`.
Knows the archive shapes and layouts, nothing of mapping, delivery or the checkpoint.
May import only the base modules (gspx_cli.errors, gspx_cli.jsonio)."""
