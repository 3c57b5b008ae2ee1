"""``torchbearer.distributed.settings``: what ``with_distributed`` accepts, and when."""

from __future__ import annotations

import pytest

from torchbearer.distributed import DISTRIBUTED, DistributedSettings, configure
from torchbearer.errors import ConfigurationError


@pytest.mark.parametrize(
    "options, message",
    [
        ({"strategy": "zero"}, "strategy 'zero' is unknown"),
        ({"state_dict_type": "partial"}, "state_dict_type 'partial' is unknown"),
        ({"timeout": 0}, "positive number of seconds"),
        ({"async_save": True}, "use it with strategy='fsdp' and state_dict_type='sharded'"),
        ({"async_save": True, "strategy": "fsdp"}, "got strategy='fsdp', state_dict_type='full'"),
    ],
)
def test_unusable_settings_are_refused_with_what_to_use_instead(options, message):
    with pytest.raises(ConfigurationError, match=message):
        configure({}, **options)


def test_settings_cannot_change_once_the_trial_runs_distributed():
    state = {DISTRIBUTED: DistributedSettings(active=True)}
    with pytest.raises(ConfigurationError, match="before the first run"):
        configure(state, strategy="fsdp")
