"""Floor 5: LaTeX. Escaping of user strings, notations, block and entry level rendering, derivation
documents and the source documents' equations."""
