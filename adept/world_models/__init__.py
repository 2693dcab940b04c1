"""ADEPT's world model and everything that works on it, in one place.

- :mod:`~adept.world_models.model` — the dynamics p(s′ | s, a) (classifier-free-guided
  diffusion, or a Gaussian ensemble as the baseline), the reward/terminal model and the
  :class:`WorldModel` that holds both;
- :mod:`~adept.world_models.rollout` — policy evaluation in the model: imagined rollouts of π;
- :mod:`~adept.world_models.importance` — the importance weights π/β and the re-fit they drive;
- :mod:`~adept.world_models.pretrain` — β's fit and the world model's pre-training on the data;
- :mod:`~adept.world_models.true_dynamics` — the model's error against the simulator.
"""
