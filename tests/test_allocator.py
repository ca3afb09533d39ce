"""Importing carelink before polars sets polars' allocator to keep freed memory for a while (``ALLOCATOR_SETTINGS``)."""

import os
import subprocess
import sys

import carelink

_SHOW = "import carelink, polars, os; print(os.environ['_RJEM_MALLOC_CONF'])"


def _allocator_conf(environment: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", _SHOW], env=environment, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_carelink_settings_come_after_polars_defaults_so_they_win():
    environment = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    conf = _allocator_conf(environment)
    assert conf.endswith("," + carelink.ALLOCATOR_SETTINGS)
    assert "dirty_decay_ms:500" in conf  # polars' own defaults stay, before carelink's


def test_a_setting_of_the_operators_own_is_kept():
    environment = {**os.environ, "_RJEM_MALLOC_CONF": "dirty_decay_ms:0"}
    conf = _allocator_conf(environment)
    assert conf.endswith(",dirty_decay_ms:0")
    assert carelink.ALLOCATOR_SETTINGS not in conf
