"""SignalWatch: the first SIGTERM/SIGINT becomes a flag, a second acts as usual."""

import signal

import pytest

from universal_embedding.train import preemption


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_is_recorded_and_handlers_come_back(sig):
    before = {s: signal.getsignal(s) for s in preemption.SIGNALS}
    with preemption.SignalWatch() as watch:
        assert watch.received is None
        signal.raise_signal(sig)  # to this thread, handled before raise_signal returns
        assert watch.received == sig
        assert signal.getsignal(sig) == before[sig]  # a second one would act as usual
    assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == before


def test_second_ctrl_c_interrupts():
    # Python's own Ctrl-C handler first: a library imported by an earlier test may have
    # installed another one in this process.
    earlier = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with preemption.SignalWatch() as watch:
            signal.raise_signal(signal.SIGINT)
            assert watch.received == signal.SIGINT
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, earlier)
