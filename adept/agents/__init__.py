"""Offline agents sharing one surface: ``update``, ``act``, ``log_prob``, ``state_dict``."""

from collections.abc import Callable

from adept.agents.base import Agent, AgentSpec
from adept.agents.bc import BC, BCConfig
from adept.agents.iql import IQL, IQLConfig
from adept.agents.sac import SAC, SACConfig
from adept.agents.td3bc import TD3BC, TD3BCConfig

#: Agent constructors by CLI name: ``AGENTS[name](spec, config)``.
AGENTS: dict[str, Callable[..., Agent]] = {"iql": IQL, "sac": SAC, "td3bc": TD3BC, "bc": BC}
#: Each agent's hyper-parameter dataclass, by the same names.
AGENT_CONFIGS: dict[str, type] = {
    "iql": IQLConfig,
    "sac": SACConfig,
    "td3bc": TD3BCConfig,
    "bc": BCConfig,
}

__all__ = [
    "AGENTS",
    "AGENT_CONFIGS",
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
