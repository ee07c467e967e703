"""A chat model wrapped so every call is charged to the daily token budget of whoever caused it
(`core/budget.py`): admitted before it is sent, charged its actual use after."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio

from bookchat.content.markdown import estimate_tokens
from bookchat.core.budget import Account, Reservation, current_account
from bookchat.providers.base import AnswerMode, ChatModel, ChatPrompt, Completion, Finish, Usage

# Tokens a message costs beyond its text (role and separators, as OpenAI counts them).
MESSAGE_OVERHEAD_TOKENS = 4
# The output held for a call that sets no `max_tokens`.
DEFAULT_OUTPUT_TOKENS = 1_024


def prompt_tokens(prompt: ChatPrompt) -> int:
    """An estimate of a prompt's input tokens (it runs high: see `estimate_tokens`)."""
    return sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in prompt.messages)


async def admit(tokens: int) -> None:
    """Refuse now (429) when the current request's payer has fewer than `tokens` left: for a
    check before a stream opens, when a refusal can still be a plain HTTP error."""
    account = current_account()
    if account is not None:
        await account.budget.ensure_left(account.payer, account.call, tokens)


async def admit_prompt(prompt: ChatPrompt) -> None:
    """`admit` for a chat prompt, whose tokens are counted only when someone pays for it."""
    if current_account() is not None:
        await admit(prompt_tokens(prompt))


class BudgetedChatModel:
    """`ChatModel` that charges each call of the model it wraps to the request's account.

    Without an account (CLI, evaluations, admins) or for the offline answerer (which costs
    nothing) calls pass straight through. The actual use is the vendor's reported usage, else
    an estimate of the input and of the text received; a call that failed before any text came
    is not charged.
    """

    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner
        self.provider: str = inner.provider
        self.model: str = inner.model
        self.mode: AnswerMode = inner.mode
        self.takes_documents: bool = inner.takes_documents

    def _account(self) -> Account | None:
        return current_account() if self.mode == "generative" else None

    async def complete(self, prompt: ChatPrompt) -> Completion:
        account = self._account()
        if account is None:
            return await self.inner.complete(prompt)
        input_tokens = prompt_tokens(prompt)
        reservation = await _reserve(account, prompt, input_tokens)
        used = 0
        try:
            completion = await self.inner.complete(prompt)
            used = completion.usage.total_tokens or input_tokens + estimate_tokens(completion.text)
        finally:
            await _settle(account, reservation, used)
        return completion

    async def stream(self, prompt: ChatPrompt) -> AsyncGenerator[str | Finish | Usage]:
        account = self._account()
        if account is None:
            async with aclosing(self.inner.stream(prompt)) as pieces:
                async for piece in pieces:
                    yield piece
            return
        input_tokens = prompt_tokens(prompt)
        reservation = await _reserve(account, prompt, input_tokens)
        usage: Usage | None = None
        received: list[str] = []
        try:
            async with aclosing(self.inner.stream(prompt)) as pieces:
                async for piece in pieces:
                    if isinstance(piece, Usage):
                        usage = piece
                    elif isinstance(piece, str):
                        received.append(piece)
                    yield piece
        finally:
            # A stream cut short (the reader left, the vendor failed) has no usage: what came
            # was generated, and its input was read.
            if usage is not None and usage.total_tokens:
                used = usage.total_tokens
            elif received:
                used = input_tokens + estimate_tokens("".join(received))
            else:
                used = 0
            await _settle(account, reservation, used)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _reserve(account: Account, prompt: ChatPrompt, input_tokens: int) -> Reservation:
    output_tokens = prompt.max_tokens or DEFAULT_OUTPUT_TOKENS
    return await account.budget.reserve(
        account.payer, account.call, input_tokens=input_tokens, output_tokens=output_tokens
    )


async def _settle(account: Account, reservation: Reservation, used: int) -> None:
    # Shielded: a reader who hangs up cancels the call, not the bookkeeping of what it cost.
    with anyio.CancelScope(shield=True):
        await account.budget.settle(reservation, used)
