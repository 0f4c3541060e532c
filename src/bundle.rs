//! DLI and DLF import/export zip formats and safe zip reading (pure). Not built yet (issue 2/6).
