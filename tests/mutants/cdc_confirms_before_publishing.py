"""Mutant: the CDC connector confirms the change feed's position (advances the slot) before
the sink acknowledged the batch, so a connector killed mid-batch never publishes the rest.

Loaded with ``-p tests.mutants.cdc_confirms_before_publishing``; the CDC suite must report the
unpublished changes as lost.
"""

from __future__ import annotations

from prism_testkit.patterns.cdc import CdcConnector


async def _confirm_then_publish(self: CdcConnector) -> int:
    if not self._started:
        await self.start()
    if self._window is None and self._state is not None and not self._state.done:
        await self._open_window(self._state)
    sets = await self.feed.read(self.config.capture, limit=self.config.batch_size, wait=self.config.poll_interval)
    if not sets:
        return 0
    await self.feed.confirm(self.config.capture, sets[-1].position)  # the bug: confirmed before the sink acked
    published = 0
    for change_set in sets:
        published += await self._publish_set(change_set)
    return published


CdcConnector.run_once = _confirm_then_publish  # type: ignore[method-assign]
