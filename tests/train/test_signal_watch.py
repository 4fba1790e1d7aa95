"""SignalWatch: the first SIGTERM/SIGINT becomes a flag, a second acts as usual."""

import os
import signal

import pytest

from universal_embedding.train import preemption


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_is_recorded_and_handlers_come_back(sig):
    before = {s: signal.getsignal(s) for s in preemption.SIGNALS}
    with preemption.SignalWatch() as watch:
        assert watch.received is None
        os.kill(os.getpid(), sig)  # delivered before os.kill returns to Python code
        assert watch.received == sig
        assert signal.getsignal(sig) == before[sig]  # a second one would act as usual
    assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == before


def test_second_ctrl_c_interrupts():
    with preemption.SignalWatch() as watch:
        os.kill(os.getpid(), signal.SIGINT)
        assert watch.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
