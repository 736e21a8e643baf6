"""The claim check as a stage of a pattern chain."""

from __future__ import annotations

from prism_testkit.interfaces import Message

from .claim import ClaimCheck


class ClaimCheckStage:
    """:class:`ClaimCheck` as a chain stage: ``outgoing``, ``incoming`` and ``release`` are the
    claim check's own; ``abandon`` deletes the object of a claimed message that was never sent
    (the TTL would remove it too, but later)."""

    def __init__(self, claim_check: ClaimCheck) -> None:
        self.claim_check = claim_check

    async def outgoing(self, message: Message) -> Message:
        return await self.claim_check.outgoing(message)

    async def incoming(self, message: Message) -> Message:
        return await self.claim_check.incoming(message)

    async def release(self, message: Message) -> None:
        await self.claim_check.release(message)

    async def abandon(self, message: Message, error: BaseException) -> None:
        ref = self.claim_check.reference(message)
        if ref is not None:
            await self.claim_check.objects.delete(ref.bucket, ref.key)
