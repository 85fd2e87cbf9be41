"""datasets of the SparseDrive plugin; each submodule adds its import here once it imports cleanly."""
