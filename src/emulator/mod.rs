//! The local DLI/DLF/OBS service emulator. Not built yet (issue 2).
