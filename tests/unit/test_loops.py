"""The shared loop runner fails on unhandled loop exceptions, and only grpc's poller is spared."""

import asyncio

import pytest

from dengine.testing.loops import LOOP_KINDS, is_grpc_poller_noise, run_checked


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_an_unretrieved_task_exception_fails_the_run(kind):
    async def main() -> None:
        async def boom() -> None:
            raise ValueError("lost")

        asyncio.get_running_loop().create_task(boom())
        await asyncio.sleep(0.01)

    with pytest.raises(AssertionError, match="lost"):
        run_checked(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_a_failing_callback_fails_the_run(kind):
    async def main() -> int:
        asyncio.get_running_loop().call_soon(lambda: 1 / 0)
        await asyncio.sleep(0.01)
        return 7

    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        run_checked(kind, main)


@pytest.mark.parametrize("kind", LOOP_KINDS)
def test_a_clean_run_returns_its_result(kind):
    async def main(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert run_checked(kind, main, 21) == 42


def test_only_grpcs_poller_on_a_closed_loop_is_left_out():
    poller = "Exception in callback PollerCompletionQueue._handle_events(<_UnixSelector>)()"
    assert is_grpc_poller_noise(
        {"message": poller, "exception": RuntimeError("Event loop is closed")})
    assert is_grpc_poller_noise({"message": poller, "exception": BlockingIOError(11, "again")})
    assert not is_grpc_poller_noise({"message": poller, "exception": RuntimeError("other")})
    assert not is_grpc_poller_noise(
        {"message": "Exception in callback Node._drive()", "exception": RuntimeError(
            "Event loop is closed")})
    assert not is_grpc_poller_noise({"message": "Task exception was never retrieved"})
