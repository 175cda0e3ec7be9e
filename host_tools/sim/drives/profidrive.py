"""The PROFIdrive device state machine, shared by the ABB Drives profile and SINAMICS G120 STW1/ZSW1.

Both profiles use the same control bits (1 = normal / enabled):
    0 ON (0 = OFF1: ramp stop)   1 no OFF2 (0 = coast)   2 no OFF3 (0 = quick stop)
    3 enable operation (0 = pulses off, motor coasts)   4 RFG enable (0 = RFG output forced to 0)
    5 RFG continue (0 = hold RFG output)   6 setpoint enable (0 = RFG input 0, i.e. min speed)
    7 reset / acknowledge fault on the 0 -> 1 edge   10 remote / control by PLC (0 = word ignored)
States (ABB names / PROFIdrive S-numbers) and transitions, checked in this order:
    OFF2 (bit 1 = 0) from anywhere but FAULT   -> SWITCH-ON INHIBITED (S1), motor coasts
    OFF3 (bit 2 = 0) while pulses are on        -> OFF3 ACTIVE (S5b, quick stop), at 0 -> S1
                     otherwise                  -> S1
    S1  bit 0 = 0                               -> READY TO SWITCH ON (S2)      (word 0x0476)
    S2  bit 0 = 1                               -> READY TO OPERATE (S3)        (word 0x0477)
    S3  bit 3 = 1                               -> OPERATION ENABLED (S4)       (word 0x047F)
    S4  bit 0 = 0                               -> OFF1 ACTIVE (S5a, ramp stop), at 0 -> S2
        bit 3 = 0                               -> S3, motor coasts
    S5a bit 0 = 1 again                         -> S4 (the run resumes from the present speed)
    any trip                                    -> FAULT, motor coasts
    FAULT reset edge with no fault cause left   -> S1: the master repeats 0x0476, 0x0477, 0x047F
One write may pass several transitions (0x047F straight from S2 runs), as on the real drives.
Status bits 0..9 are common: 0 ready to switch on, 1 ready to operate, 2 operation enabled,
3 fault, 4 no OFF2, 5 no OFF3, 6 switch-on inhibited, 7 alarm, 8 at setpoint, 9 remote.
"""

from __future__ import annotations

from .base import COAST, QUICK_STOP, RAMP_STOP, RUN, Drive

SWITCH_ON_INHIBITED = "switch_on_inhibited"
READY_TO_SWITCH_ON = "ready_to_switch_on"
READY_TO_OPERATE = "ready_to_operate"
OPERATION_ENABLED = "operation_enabled"
OFF1_ACTIVE = "off1_active"
OFF3_ACTIVE = "off3_active"
FAULT = "fault"

_PULSES_ON = (OPERATION_ENABLED, OFF1_ACTIVE, OFF3_ACTIVE)
_MOTION = {OPERATION_ENABLED: RUN, OFF1_ACTIVE: RAMP_STOP, OFF3_ACTIVE: QUICK_STOP}

CW_ON = 0x0001
CW_NO_OFF2 = 0x0002
CW_NO_OFF3 = 0x0004
CW_ENABLE_OPERATION = 0x0008
CW_RFG_ENABLE = 0x0010
CW_RFG_CONTINUE = 0x0020
CW_SETPOINT_ENABLE = 0x0040
CW_RESET = 0x0080
CW_REMOTE = 0x0400


class ProfidriveDrive(Drive):
    def __init__(self, *args, **kwargs) -> None:
        self.state = SWITCH_ON_INHIBITED
        self.control_register = 0  # last word written, acted on or not
        super().__init__(*args, **kwargs)

    def _write_control(self, word: int) -> None:
        self.control_register = word
        if word & CW_REMOTE:
            self._control_written(word)

    def _next_state(self, state: str) -> str:
        cw = self.control_word
        moving = self.speed_pct > 0
        if not cw & CW_NO_OFF2:
            return SWITCH_ON_INHIBITED
        if not cw & CW_NO_OFF3:
            return OFF3_ACTIVE if state in _PULSES_ON and moving else SWITCH_ON_INHIBITED
        if state == OFF3_ACTIVE:  # a quick stop runs to standstill once begun
            return OFF3_ACTIVE if moving else SWITCH_ON_INHIBITED
        on = cw & CW_ON
        enable = cw & CW_ENABLE_OPERATION
        if state == SWITCH_ON_INHIBITED:
            return SWITCH_ON_INHIBITED if on else READY_TO_SWITCH_ON
        if state == READY_TO_SWITCH_ON:
            return READY_TO_OPERATE if on else READY_TO_SWITCH_ON
        if state == READY_TO_OPERATE:
            if not on:
                return READY_TO_SWITCH_ON
            return OPERATION_ENABLED if enable else READY_TO_OPERATE
        if state == OPERATION_ENABLED:
            if not on:
                return OFF1_ACTIVE
            return OPERATION_ENABLED if enable else READY_TO_OPERATE
        # OFF1_ACTIVE
        if not enable:
            return READY_TO_SWITCH_ON
        if on:
            return OPERATION_ENABLED
        return OFF1_ACTIVE if moving else READY_TO_SWITCH_ON

    def _evaluate(self, reset_edge: bool) -> None:
        cw = self.control_word
        self.rfg_output_zero = not cw & CW_RFG_ENABLE
        self.rfg_hold = not cw & CW_RFG_CONTINUE
        self.rfg_input_zero = not cw & CW_SETPOINT_ENABLE
        if self.tripped and not (reset_edge and self._try_reset()):
            self.state = FAULT
        else:
            if self.state == FAULT:
                self.state = SWITCH_ON_INHIBITED
            for _ in range(6):
                following = self._next_state(self.state)
                if following == self.state:
                    break
                self.state = following
        self.motion = _MOTION.get(self.state, COAST)

    def common_status_bits(self) -> int:
        st = self.state
        cw = self.control_word
        bits = _STATE_BITS[st] | 0x0200  # 0x0200: under fieldbus control
        if self.tripped:
            bits |= 0x0008
        if cw & CW_NO_OFF2:
            bits |= 0x0010
        if cw & CW_NO_OFF3 and st != OFF3_ACTIVE:
            bits |= 0x0020
        if self.alarm:
            bits |= 0x0080
        if self.at_setpoint:
            bits |= 0x0100
        return bits


def _state_bits(st: str) -> int:
    """Status bits 0, 1, 2 and 6: the state's alone."""
    bits = 0
    if st in _PULSES_ON or st in (READY_TO_SWITCH_ON, READY_TO_OPERATE):
        bits |= 0x0001
    if st in _PULSES_ON or st == READY_TO_OPERATE:
        bits |= 0x0002
    if st in _PULSES_ON:
        bits |= 0x0004
    if st == SWITCH_ON_INHIBITED:
        bits |= 0x0040
    return bits


_STATE_BITS = {
    st: _state_bits(st)
    for st in (
        SWITCH_ON_INHIBITED,
        READY_TO_SWITCH_ON,
        READY_TO_OPERATE,
        OPERATION_ENABLED,
        OFF1_ACTIVE,
        OFF3_ACTIVE,
        FAULT,
    )
}
