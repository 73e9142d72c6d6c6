"""The local cloud's runner: each invocation sees its own function's environment, and calls into moto take turns."""

from __future__ import annotations

import os
import threading

from infra.local.runner import MotoLock, ThreadRoutedEnviron


def test_each_thread_sees_its_own_overlay_and_the_process_environment_is_untouched():
    # Given a routed environment over a process environment
    process = {"SHARED": "process", "AWS_REGION": "us-east-1"}
    environ = ThreadRoutedEnviron(process)
    seen: dict[str, tuple[str | None, str | None]] = {}
    inside = threading.Barrier(2)

    def invocation(name: str) -> None:
        with environ.overlay({"FUNCTION": name, "SHARED": f"{name}-value"}):
            inside.wait()  # both overlays are active at once
            seen[name] = (environ.get("FUNCTION"), environ.get("SHARED"))
            environ["WRITTEN"] = name  # a handler's own write stays in its invocation
            del environ["AWS_REGION"]
            assert "AWS_REGION" not in environ and environ.get("AWS_REGION") is None
            inside.wait()

    # When two invocations run side by side
    threads = [threading.Thread(target=invocation, args=(name,)) for name in ("predict", "train")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each saw its own values, and the process environment kept its own
    assert seen == {"predict": ("predict", "predict-value"), "train": ("train", "train-value")}
    assert process == {"SHARED": "process", "AWS_REGION": "us-east-1"}
    assert dict(environ) == process and environ.copy() == process


def test_an_inner_overlay_replaces_the_outer_and_unset_keys_fall_through_to_the_process():
    environ = ThreadRoutedEnviron({"A": "1"})
    with environ.overlay({"B": "2"}):
        with environ.overlay({"C": "3"}):  # a function invoked from another's thread sees its own variables only
            assert sorted(environ) == ["A", "C"] and len(environ) == 2
        assert sorted(environ) == ["A", "B"]
    environ["D"] = "4"  # outside an invocation: the process environment
    assert environ.process == {"A": "1", "D": "4"}


def test_os_getenv_reads_through_a_routed_os_environ():
    process = os.environ
    os.environ = ThreadRoutedEnviron(process)  # type: ignore[assignment]  # noqa: B003
    try:
        with os.environ.overlay({"LOOPML_RUNNER_TEST": "routed"}):  # type: ignore[attr-defined]
            assert os.getenv("LOOPML_RUNNER_TEST") == "routed"
        assert os.getenv("LOOPML_RUNNER_TEST") is None
    finally:
        os.environ = process  # noqa: B003


def test_a_released_lock_lets_another_thread_in_and_is_held_again_after():
    lock = MotoLock()
    other_got_in = threading.Event()

    def other() -> None:
        with lock:
            other_got_in.set()

    with lock, lock:  # held twice, as a call into moto that invokes a function would
        with lock.released():
            thread = threading.Thread(target=other)
            thread.start()
            assert other_got_in.wait(5)
            thread.join()
        # Held again at the same depth: another thread waits now
        blocked = threading.Thread(target=other)
        other_got_in.clear()
        blocked.start()
        assert not other_got_in.wait(0.2)
    blocked.join(5)
    assert other_got_in.is_set()


def test_released_is_a_no_op_for_a_thread_not_holding_the_lock():
    lock = MotoLock()
    with lock.released(), lock:
        pass
