using LSVCR.Artifacts;
using LSVCR.Data;
using LSVCR.Embeddings;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using System.Diagnostics.Metrics;
using System.Globalization;

namespace LSVCR.Jobs;

/// <summary>
/// The embeddings step as a service: opens the dataset set, runs <see cref="EmbeddingJob"/> (resumable chunks in the
/// step's work folder) and publishes <c>photo_embs.npy</c>, <c>comment_embs.npy</c> and <c>embeddings.json</c>.
/// </summary>
public sealed class EmbeddingsJobService(IArtifactStore store, IOptions<EmbeddingsJobOptions> options, IOptions<JobsOptions> jobs,
    ILogger<EmbeddingsJobService> logger, IMeterFactory meters)
    : JobService(JobTelemetry.Embeddings, store, jobs, logger, meters)
{
    public const string Step = "embeddings", ArtifactKind = "embeddings";

    private EmbedOptions Embed(EmbeddingsJobRequest request)
    {
        var embed = request.Embed ?? options.Value.Embed;
        embed.Validate();
        return embed;
    }

    /// <summary>The step key: the dataset's content hash and everything that changes the vectors (the encoder by its
    /// fingerprint — model bytes, tokenizer, token limit, pooling — not by its path).</summary>
    public string StepKey(EmbeddingsJobRequest request)
    {
        var embed = Embed(request);
        var fingerprint = TextEmbedder.Resolve(embed).Fingerprint;
        return ContentHash.StepKey(Step, [request.Dataset.ContentSha256],
            new { fingerprint, instruction = embed.Instruction ?? "", embed.BatchSize, embed.Device });
    }

    public async Task<EmbeddingsJobResult> RunAsync(EmbeddingsJobRequest request, IProgress<JobProgress>? progress = null, CancellationToken ct = default)
    {
        var embed = Embed(request);
        var runner = Runner();
        var (output, manifest) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, StepKey(request), async (work, relay, token) =>
        {
            var dataset = await Store.OpenAsync(request.Dataset, token);
            var catalog = ReferenceLayout.ReadCatalog(dataset.Directory, relay);
            var written = await EmbeddingJob.RunAsync(catalog, work, embed, relay, token);
            return new StepProduct(work, [EmbeddingManifest.PhotoFile, EmbeddingManifest.CommentFile, EmbeddingManifest.FileName], Metadata(written));
        }, progress, ct);
        return Result(output, manifest);
    }

    // The chunked form of the same step, for the suite's competing Embeddings instances: a plan (the EmbeddingPlan
    // every process cuts the same chunks from), one set per chunk, and the assembly into the output set above. All
    // three are published through StepRunner: keyed, manifest-last, reused when already there, so a redelivered
    // message does its work once. Work sets live under embedding-work/{output set}/{plan key}/ and are removed once
    // the output is published.
    public const string PlanStep = "embedding-plan", ChunkStep = "embedding-chunk", PlanFile = "plan.json", ChunkFile = "chunk.npy";

    // Encoders opened by the chunk messages, by their settings: a worker keeps its model loaded between chunks.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<TextEmbedder>> encoders = new();

    private TextEmbedder Encoder(EmbedOptions embed)
    {
        var key = $"{TextEmbedder.Resolve(embed).Fingerprint}|{embed.BatchSize}|{embed.Threads}|{embed.IntraOpThreads}|{embed.Device}|{embed.MaxTokens}";
        return encoders.GetOrAdd(key, _ => new Lazy<TextEmbedder>(() => TextEmbedder.Open(embed))).Value;
    }

    private static string WorkSet(EmbeddingsJobRequest request, string planKey, string name) => $"embedding-work/{request.OutputSet}/{planKey}/{name}";

    /// <summary>The output when it is already published under this request's step key (a rerun does no work), else null.</summary>
    public Task<JobOutput?> TryGetOutputAsync(EmbeddingsJobRequest request, CancellationToken ct = default) =>
        Runner().TryReuseAsync(request.OutputSet, StepKey(request), ct);

    /// <summary>Plans the request's chunks and publishes the plan as a set (reused when published before).</summary>
    public async Task<EmbeddingChunkPlan> PlanChunksAsync(EmbeddingsJobRequest request, CancellationToken ct = default)
    {
        var embed = Embed(request);
        var stepKey = StepKey(request);
        // The plan's set id holds a hash of the step key and the chunk size: another chunking is another plan.
        var planStepKey = ContentHash.StepKey(PlanStep, [stepKey], new { embed.ChunkSize });
        var planKey = planStepKey[..16];
        var runner = Runner();
        var (output, manifest) = await runner.RunAsync(PlanStep, WorkSet(request, planKey, "plan"), PlanStep, planStepKey,
            async (work, relay, token) =>
            {
                var dataset = await Store.OpenAsync(request.Dataset, token);
                var catalog = ReferenceLayout.ReadCatalog(dataset.Directory, relay);
                var plan = EmbeddingPlan.Create(catalog, Encoder(embed), embed, relay, token);
                plan.Save(Path.Combine(work, PlanFile));
                return new StepProduct(work, [PlanFile], new Dictionary<string, string> { ["chunks"] = TrainingInputs.Invariant(plan.Chunks), ["plan_key"] = planKey });
            }, null, ct);
        return new EmbeddingChunkPlan(output.Output, int.Parse(manifest.Metadata["chunks"], CultureInfo.InvariantCulture), planKey);
    }

    /// <summary>Encodes chunk <paramref name="chunk"/> of the plan and publishes it as a set (a chunk already published is not encoded again).</summary>
    public async Task<JobOutput> ComputeChunkAsync(EmbeddingsJobRequest request, EmbeddingChunkPlan plan, int chunk, CancellationToken ct = default)
    {
        var embed = Embed(request);
        var runner = Runner();
        var (output, _) = await runner.RunAsync(ChunkStep, WorkSet(request, plan.Key, ChunkName(chunk)), ChunkStep,
            ContentHash.StepKey(ChunkStep, [plan.Plan.ContentSha256], new { chunk }), async (work, relay, token) =>
            {
                var (loaded, _) = await LoadPlanAsync(request, plan, embed, token);
                var (first, count) = loaded.Range(chunk);
                relay.Report(new("embed", 0, count, $"chunk {chunk + 1}/{plan.Chunks}"));
                var vectors = loaded.Encode(Encoder(embed), chunk, token);
                loaded.WriteChunk(Path.Combine(work, ChunkFile), chunk, vectors);
                relay.Report(new("embed", count, count, $"chunk {chunk + 1}/{plan.Chunks}"));
                return new StepProduct(work, [ChunkFile], new Dictionary<string, string>
                {
                    ["chunk"] = TrainingInputs.Invariant(chunk), ["first"] = TrainingInputs.Invariant(first), ["count"] = TrainingInputs.Invariant(count),
                });
            }, null, ct);
        return output;
    }

    /// <summary>How many of the plan's chunks are published.</summary>
    public async Task<int> CountChunksAsync(EmbeddingsJobRequest request, EmbeddingChunkPlan plan, CancellationToken ct = default)
    {
        int present = 0;
        for (int k = 0; k < plan.Chunks; k++)
            if (await Store.TryGetManifestAsync(WorkSet(request, plan.Key, ChunkName(k)), ct) is not null) present++;
        return present;
    }

    /// <summary>
    /// When every chunk is published, assembles them into the output set (the same bytes <see cref="RunAsync"/> writes)
    /// and removes the work sets; returns null while chunks are missing. Whoever lands the last chunk gets here with
    /// all of them present (each chunk is published before this looks), so no completion is lost; two instances
    /// landing the last chunks together may both assemble, and the store keeps the first output set.
    /// </summary>
    public async Task<EmbeddingsJobResult?> TryAssembleAsync(EmbeddingsJobRequest request, EmbeddingChunkPlan plan, CancellationToken ct = default)
    {
        if (await TryGetOutputAsync(request, ct) is { } done) return await ResultOf(done, ct);
        if (await CountChunksAsync(request, plan, ct) < plan.Chunks) return null;
        var embed = Embed(request);
        var runner = Runner();
        var (output, manifest) = await runner.RunAsync(Step, request.OutputSet, ArtifactKind, StepKey(request), async (work, relay, token) =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var (loaded, catalog) = await LoadPlanAsync(request, plan, embed, token);
            var assembly = loaded.StartAssembly(catalog);
            for (int k = 0; k < plan.Chunks; k++)
            {
                var part = await Store.OpenAsync(WorkSet(request, plan.Key, ChunkName(k)), token);
                assembly.Add(k, loaded.TryReadChunk(part.PathOf(ChunkFile), k)
                                ?? throw new LsvcrException($"{Store.Name}:{part.Reference.Set}: {ChunkFile} does not hold chunk {k} of the plan"));
            }
            var written = assembly.Write(work, Encoder(embed), resumed: 0, clock.Elapsed, relay);
            return new StepProduct(work, [EmbeddingManifest.PhotoFile, EmbeddingManifest.CommentFile, EmbeddingManifest.FileName], Metadata(written));
        }, null, ct);
        if (!output.Reused)
        {
            // The output is visible: the work sets are no longer needed by anyone (a late duplicate finds the output first).
            for (int k = 0; k < plan.Chunks; k++) await Store.DeleteAsync(WorkSet(request, plan.Key, ChunkName(k)), ct);
            await Store.DeleteAsync(WorkSet(request, plan.Key, "plan"), ct);
        }
        return Result(output, manifest);
    }

    private async Task<(EmbeddingPlan Plan, Data.Catalog Catalog)> LoadPlanAsync(EmbeddingsJobRequest request, EmbeddingChunkPlan plan, EmbedOptions embed, CancellationToken ct)
    {
        var dataset = await Store.OpenAsync(request.Dataset, ct);
        var catalog = ReferenceLayout.ReadCatalog(dataset.Directory);
        var planSet = await Store.OpenAsync(plan.Plan, ct);
        return (EmbeddingPlan.Load(planSet.PathOf(PlanFile), catalog, embed), catalog);
    }

    private async Task<EmbeddingsJobResult> ResultOf(JobOutput output, CancellationToken ct) => Result(output, await Store.GetManifestAsync(output.Output, ct));

    private static EmbeddingsJobResult Result(JobOutput output, ArtifactManifest manifest) =>
        new(output, manifest.Metadata["encoder"], int.Parse(manifest.Metadata["dimension"], CultureInfo.InvariantCulture));

    private static Dictionary<string, string> Metadata(EmbeddingManifest written) => new()
    {
        ["encoder"] = written.Encoder, ["dimension"] = TrainingInputs.Invariant(written.Dimension), ["dataset_text_hash"] = written.DatasetHash,
    };

    private static string ChunkName(int k) => $"chunk-{k:D5}";

    public override void Dispose()
    {
        foreach (var open in encoders.Values.Where(e => e.IsValueCreated)) open.Value.Dispose();
        base.Dispose();
    }
}

/// <summary>A published chunk plan: its set, chunk count and key (the work sets' folder).</summary>
public sealed record EmbeddingChunkPlan(ArtifactSetReference Plan, int Chunks, string Key);
