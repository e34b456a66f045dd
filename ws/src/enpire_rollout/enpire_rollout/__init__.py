"""R: fleet scheduler, episode execution, recording and MRU accounting."""
