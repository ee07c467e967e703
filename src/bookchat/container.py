"""Every long-lived object of a process, built once (by the app's lifespan or a CLI command)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bookchat.core.config import Settings
from bookchat.core.db import DatabaseTimeouts, create_engine, create_sessionmaker
from bookchat.retrieval.index import IndexSignature, QdrantIndex

if TYPE_CHECKING:
    # Only `open_container` builds these, and imports them there: a command that needs only
    # the stores (`open_stores`) does not load the chat, accounts or web stacks.
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

    from bookchat.accounts.service import AccountService, Authenticator
    from bookchat.books.service import BookService
    from bookchat.chapters.service import ChapterService
    from bookchat.chat.conversations import ConversationService
    from bookchat.chat.service import ChatService
    from bookchat.chatkit.server import BookChatKitServer
    from bookchat.content.ingestion import Ingestor
    from bookchat.content.service import ContentService
    from bookchat.core.budget import TokenBudget
    from bookchat.core.cache import Cache
    from bookchat.core.concurrency import ClientSlots
    from bookchat.core.metrics import Metrics
    from bookchat.core.ratelimit import RateLimiter
    from bookchat.core.redis import RedisStatus
    from bookchat.health.service import HealthService
    from bookchat.insights.service import InsightsService
    from bookchat.providers.factory import Providers
    from bookchat.retrieval.service import HybridRetriever
    from bookchat.web.service import BookPages


@dataclass(slots=True)
class Container:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    providers: Providers
    index: QdrantIndex
    books: BookService
    retriever: HybridRetriever
    ingestor: Ingestor
    content: ContentService
    book_pages: BookPages  # the demo site's chapters, each rendered once per content version
    chapters: ChapterService
    chat: ChatService
    conversations: ConversationService
    auth: Authenticator
    accounts: AccountService
    redis: Redis | None  # None: rate limits and caches live in this process
    redis_status: RedisStatus
    limiter: RateLimiter
    budget: TokenBudget  # what readers' model calls may cost per day
    stream_slots: ClientSlots  # answer streams open per reader (chat/limits.py)
    cache: Cache
    metrics: Metrics
    health: HealthService
    insights: InsightsService
    # Built on the first ChatKit request (`chatkit/dependencies.py`); None until then.
    chatkit: BookChatKitServer | None = None


def open_chatkit(container: Container) -> BookChatKitServer | None:
    """The ChatKit server over the chat services, when its SDK (an optional extra) is here."""
    from bookchat.chatkit import available as chatkit_available

    if not chatkit_available():
        return None
    from bookchat.chatkit.server import BookChatKitServer

    return BookChatKitServer(
        settings=container.settings,
        chat=container.chat,
        conversations=container.conversations,
        sessionmaker=container.sessionmaker,
    )


@dataclass(slots=True)
class Stores:
    """The database and the vector index without any model: for a command that decides from
    the stores alone (an unchanged re-ingest), before it pays for loading models.

    `index` was opened without an embedder: it reads and deletes points; it never creates the
    collection nor writes vectors.
    """

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    index: QdrantIndex


def open_engine(settings: Settings) -> AsyncEngine:
    """The database engine for these settings (the pool and timeouts of a long-lived process)."""
    return create_engine(
        settings.database_url.get_secret_value(),
        pool_size=settings.database_pool_size,
        echo=settings.database_echo,
        timeouts=DatabaseTimeouts(
            connect=settings.database_connect_timeout_seconds,
            command=settings.database_command_timeout_seconds,
            pool=settings.database_pool_timeout_seconds,
        ),
    )


def open_index(settings: Settings, signature: IndexSignature) -> QdrantIndex:
    """Open (not yet check) the Qdrant collection for these settings and embedder."""
    return QdrantIndex.open(
        collection=settings.qdrant_collection,
        signature=signature,
        url=settings.qdrant_url,
        api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
        path=settings.qdrant_path,
        timeout=settings.qdrant_timeout_seconds,
    )


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Open the database and the index alone (no provider, cache or service), and close them."""
    async with AsyncExitStack() as stack:
        engine = open_engine(settings)
        stack.push_async_callback(engine.dispose)
        index = open_index(settings, IndexSignature(embedder=None, dimension=None))
        stack.push_async_callback(index.close)
        yield Stores(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            index=index,
        )


@asynccontextmanager
async def open_container(
    settings: Settings, *, check_index: bool = True, metrics: Metrics | None = None
) -> AsyncIterator[Container]:
    """Build everything, and close it all in reverse order on the way out.

    `check_index=False` skips the embedder check of the collection (for `bookchat reindex`,
    which is how a mismatch gets fixed). `metrics` is the app's (a CLI command gets its own).
    """
    from bookchat.accounts.service import AccountService, open_authenticator
    from bookchat.books.service import BookService
    from bookchat.chapters.service import ChapterService
    from bookchat.chat.answer_cache import AnswerCache
    from bookchat.chat.conversations import ConversationService
    from bookchat.chat.service import ChatService
    from bookchat.content.ingestion import Ingestor
    from bookchat.content.service import ContentService, JobRunner
    from bookchat.core.budget import build_budget
    from bookchat.core.cache import build_cache
    from bookchat.core.concurrency import Bulkhead, build_client_slots, stream_slot_lifetime
    from bookchat.core.metrics import Metrics
    from bookchat.core.ratelimit import build_limiter
    from bookchat.core.redis import RedisStatus, create_redis
    from bookchat.health.service import HealthService
    from bookchat.insights.service import InsightsService
    from bookchat.providers.budgeted import BudgetedChatModel
    from bookchat.providers.factory import build_providers
    from bookchat.providers.measured import MeasuredChatModel
    from bookchat.retrieval.lexical import BookLexicon
    from bookchat.retrieval.relevance import RelevanceGate
    from bookchat.retrieval.rerank import CrossEncoderReranker
    from bookchat.retrieval.service import DenseOutage, HybridRetriever
    from bookchat.web.service import BookPages

    metrics = metrics or Metrics()
    async with AsyncExitStack() as stack:
        engine = open_engine(settings)
        stack.push_async_callback(engine.dispose)
        providers = await build_providers(settings, metrics)
        stack.push_async_callback(providers.aclose)
        # A call refused by the budget never reaches the model, so it is not measured either.
        providers.chat = BudgetedChatModel(MeasuredChatModel(providers.chat, metrics))
        embedder = providers.embedder
        index = open_index(
            settings,
            IndexSignature(
                embedder=embedder.name if embedder else None,
                dimension=embedder.dimension if embedder else None,
            ),
        )
        stack.push_async_callback(index.close)
        if check_index:
            await index.ensure_collection()
        sessionmaker = create_sessionmaker(engine)
        auth = await stack.enter_async_context(open_authenticator(settings))
        # Redis is optional and connects lazily: an outage at startup is not fatal (fail open).
        redis_status = RedisStatus()
        redis = create_redis(settings.redis_url.get_secret_value()) if settings.redis_url else None
        if redis is not None:
            stack.push_async_callback(redis.aclose)
        limiter = build_limiter(settings, redis, redis_status, metrics)
        cache = build_cache(settings, redis, redis_status, metrics)
        budget = build_budget(settings, redis, redis_status, metrics)
        lexicon = BookLexicon(
            index,
            cache,
            dense_budget_bytes=settings.retrieval_dense_memory_mb * 2**20 if embedder else 0,
        )
        stack.push_async_callback(lexicon.aclose)
        retriever = HybridRetriever(
            index=index,
            sparse=providers.sparse,
            lexicon=lexicon,
            embedder=providers.embedder,
            reranker=providers.reranker,
            gate=RelevanceGate(
                min_coverage=settings.retrieval_min_term_coverage,
                max_unknown=settings.retrieval_max_unknown_share,
                min_dense_score=settings.retrieval_min_dense_score,
                min_rerank_score=(
                    settings.rerank_min_score
                    if isinstance(providers.reranker, CrossEncoderReranker)
                    else None
                ),
            ),
            candidates=settings.retrieval_candidates,
            cache=cache,
            metrics=metrics,
            embed_timeout=settings.embeddings_query_timeout_seconds,
            outage=DenseOutage(retry_after=settings.embeddings_retry_after_seconds),
        )
        ingestor = Ingestor(
            sessionmaker=sessionmaker,
            index=index,
            sparse=providers.sparse,
            embedder=providers.embedder,
            cache=cache,
            metrics=metrics,
        )
        jobs = JobRunner()
        # Registered last, so it runs first: running jobs finish before the index closes.
        stack.push_async_callback(jobs.aclose, settings.shutdown_timeout_seconds)
        content = ContentService(
            sessionmaker=sessionmaker,
            ingestor=ingestor,
            retriever=retriever,
            jobs=jobs,
            searches=Bulkhead(
                "search",
                settings.search_concurrency,
                wait_seconds=settings.search_wait_seconds,
                per_client=settings.search_concurrency_per_client,
            ),
        )
        container = Container(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            providers=providers,
            index=index,
            books=BookService(
                settings=settings,
                sessionmaker=sessionmaker,
                index=index,
                lexicon=lexicon,
                cache=cache,
            ),
            retriever=retriever,
            ingestor=ingestor,
            content=content,
            book_pages=BookPages(content),
            chapters=ChapterService(
                settings=settings, model=providers.chat, sessionmaker=sessionmaker
            ),
            chat=ChatService(
                settings=settings,
                model=providers.chat,
                retriever=retriever,
                sessionmaker=sessionmaker,
                cache=AnswerCache(
                    cache=cache,
                    model=providers.chat,
                    ttl_seconds=settings.answer_cache_ttl_seconds,
                    top_k=settings.retrieval_top_k,
                ),
                metrics=metrics,
            ),
            conversations=ConversationService(metrics=metrics),
            auth=auth,
            accounts=AccountService(
                auth=auth, limiter=limiter, login_rate=settings.rate_limit_login
            ),
            redis=redis,
            redis_status=redis_status,
            limiter=limiter,
            budget=budget,
            stream_slots=build_client_slots(
                "streams", redis, redis_status, ttl_seconds=stream_slot_lifetime(settings)
            ),
            cache=cache,
            metrics=metrics,
            health=HealthService(
                engine=engine,
                index=index,
                embedder=providers.embedder,
                chat=providers.chat,
                redis=redis,
                redis_url=settings.redis_url.get_secret_value() if settings.redis_url else None,
                redis_status=redis_status,
                environment=settings.environment.value,
            ),
            insights=InsightsService(
                sessionmaker=sessionmaker, reader_salt=settings.insights_reader_salt
            ),
        )
        yield container
