"""guardrl's integrations with verl (the one place that talks to verl).

Import-light on purpose: importing this package does not import verl. Import the
submodule you need:

* :mod:`guardrl.integrations.verl.reward` — ``compute_score``, the custom reward function verl
  calls (``reward.custom_reward_function.path/name``);
* :mod:`guardrl.integrations.verl.policy_loss` — the ``guardrl_dynamic_clip`` policy loss, registered
  with verl's ``register_policy_loss`` when the module is imported
  (``actor_rollout_ref.actor.policy_loss.loss_mode=guardrl_dynamic_clip``);
* :mod:`guardrl.integrations.verl.recipe_config` — the typed guardrl keys of an RL recipe (pure), validated at load.
* :mod:`guardrl.integrations.verl.rows` — the one writer of verl RL rows (data only; imports no verl);
* :mod:`guardrl.integrations.verl.dataset` — ``TaskRLDataset``, verl's ``data.custom_cls``: renders each row's prompt
  through the recipe's task when verl loads the set.
"""
