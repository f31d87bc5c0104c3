"""Floor 6: the four source documents' claims (the catalogue) and their errata report."""
