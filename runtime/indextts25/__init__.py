"""IndexTTS-2.5: config, checkpoint layout and code post-processing (the variant object lands with
the export and runtime halves)."""
