"""Stable ids of the config keys a signed CONFIG_CHANGE command may set (commands.py).

Loaded only when such a command arrives (with config.py, which validates the result), so the
table costs no heap the rest of the time.

Rules:
- One entry per remotely settable key: (id, section, key, scale, type). The command carries an
  int32 value: value / scale in the key's unit for a NUMBER (returned as a float), the value
  itself for an INTEGER (scale 1), 0 or 1 for a BOOLEAN.
- The keys are the scalar keys of config.py's sections setpoint, speed, pid, staging and
  protection. Not settable remotely, on purpose: station, bus, pumps, io, pump_model (wiring and
  commissioning data), the curves and setpoint.mode (not scalars), and the scalars in NOT_REMOTE.
  tests/firmware/test_commands.py holds the table to the schema: every scalar key of those
  sections has an id or is in NOT_REMOTE, and every id names a key config.py knows.
- Ids are stable and never reused: a key dropped from the schema moves its id to RETIRED_KEY_IDS;
  a new key takes a new id (sections have blocks: setpoint 1.., speed 16.., pid 32.., staging
  48.., protection 64..).
"""

from micropython import const

NUMBER = const(0)  # value / scale, as a float
INTEGER = const(1)  # the value itself
BOOLEAN = const(2)  # 0 false, 1 true

CONFIG_KEYS = (
    (1, "setpoint", "dp_kpa", 10, NUMBER),
    (2, "setpoint", "min_kpa", 10, NUMBER),
    (3, "setpoint", "max_kpa", 10, NUMBER),
    (4, "setpoint", "ramp_kpa_per_s", 1000, NUMBER),
    (5, "setpoint", "discharge_fallback_kpa", 10, NUMBER),
    (16, "speed", "min_pct", 100, NUMBER),
    (17, "speed", "max_pct", 100, NUMBER),
    (18, "speed", "safe_pct", 100, NUMBER),
    (19, "speed", "slew_pct_per_s", 100, NUMBER),
    (20, "speed", "follow_band_pct", 100, NUMBER),
    (32, "pid", "kp", 1000, NUMBER),
    (33, "pid", "ti_s", 10, NUMBER),
    (34, "pid", "td_s", 10, NUMBER),
    (35, "pid", "period_ms", 1, INTEGER),
    (48, "staging", "min_run_s", 1, INTEGER),
    (49, "staging", "min_stop_s", 1, INTEGER),
    (50, "staging", "max_starts_per_hour", 1, INTEGER),
    (51, "staging", "hysteresis", 1000, NUMBER),
    (52, "staging", "rotation_hours", 1, INTEGER),
    (53, "staging", "exercise_idle_hours", 1, INTEGER),
    (54, "staging", "exercise_s", 1, INTEGER),
    (55, "staging", "eval_period_s", 1, INTEGER),
    (56, "staging", "settle_s", 1, INTEGER),
    (57, "staging", "feasibility_margin", 1000, NUMBER),
    (58, "staging", "handover_s", 1, INTEGER),
    (59, "staging", "max_running", 1, INTEGER),
    (60, "staging", "restart_as_before", 1, BOOLEAN),
    (64, "protection", "suction_margin_kpa", 10, NUMBER),
    (65, "protection", "suction_slowdown_kpa", 10, NUMBER),
    (66, "protection", "suction_stop_delay_s", 1, INTEGER),
    (67, "protection", "suction_lockout_trips", 1, INTEGER),
    (68, "protection", "suction_lockout_window_s", 1, INTEGER),
    (69, "protection", "suction_auto_reset", 1, BOOLEAN),
    (70, "protection", "lockout_reset_s", 1, INTEGER),
    (71, "protection", "restart_delay_s", 1, INTEGER),
    (72, "protection", "discharge_max_kpa", 10, NUMBER),
    (73, "protection", "discharge_slowdown_kpa", 10, NUMBER),
    (74, "protection", "discharge_stop_delay_s", 1, INTEGER),
    (75, "protection", "discharge_lockout_trips", 1, INTEGER),
    (76, "protection", "discharge_lockout_window_s", 1, INTEGER),
    (77, "protection", "discharge_auto_reset", 1, BOOLEAN),
    (78, "protection", "dry_run_min_flow_m3h", 10, NUMBER),
    (79, "protection", "dry_run_delay_s", 1, INTEGER),
    (80, "protection", "dry_run_auto_reset", 1, BOOLEAN),
    (81, "protection", "source_stop_delay_s", 1, INTEGER),
    (82, "protection", "sensor_stop_delay_s", 1, INTEGER),
    (83, "protection", "drive_reset_delay_s", 1, INTEGER),
    (84, "protection", "drive_resets_per_hour", 1, INTEGER),
    (85, "protection", "atmosphere_kpa", 10, NUMBER),
    (86, "protection", "substitute_margin_kpa", 10, NUMBER),
    (87, "protection", "suction_hold_kpa", 10, NUMBER),
    (88, "protection", "source_restart_delay_s", 1, INTEGER),
)
RETIRED_KEY_IDS = ()  # ids of keys dropped from the schema: never given to another key
NOT_REMOTE = ("setpoint.mode", "setpoint.network_loss_m_per_m3h2")  # scalars kept local


def config_key(key_id):
    """The CONFIG_KEYS entry of an id, or None."""
    for entry in CONFIG_KEYS:
        if entry[0] == key_id:
            return entry
    return None
