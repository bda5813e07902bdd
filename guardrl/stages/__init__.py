"""guardrl's stages, one package each (see LAYOUT: the layout of issue 21)."""
