"""guardrl's integrations: the only modules that talk to Ray (:mod:`guardrl.integrations.ray`), verl and vLLM."""
