"""Everything that talks to outside networks."""
