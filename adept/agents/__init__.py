"""Offline agents sharing one surface: ``update``, ``act``, ``log_prob``, ``state_dict``."""

from adept.agents.base import Agent, AgentSpec
from adept.agents.bc import BC, BCConfig
from adept.agents.iql import IQL, IQLConfig
from adept.agents.sac import SAC, SACConfig
from adept.agents.td3bc import TD3BC, TD3BCConfig

AGENTS: dict[str, type[Agent]] = {"iql": IQL, "sac": SAC, "td3bc": TD3BC, "bc": BC}
"""The agents by ``--agent`` name: ``AGENTS[name](spec, options)``, the options an instance of
``AGENTS[name].options_type``. :func:`adept.registry.register` adds one."""

__all__ = [
    "AGENTS",
    "BC",
    "IQL",
    "SAC",
    "TD3BC",
    "Agent",
    "AgentSpec",
    "BCConfig",
    "IQLConfig",
    "SACConfig",
    "TD3BCConfig",
]
