"""Object storage backends behind one async interface."""
