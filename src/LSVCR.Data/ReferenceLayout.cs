using System.Text.Encodings.Web;
using System.Text.Json;

namespace LSVCR.Data;

/// <summary>Reads and writes the authors' reference dataset folder (MODEL.md §1.1).</summary>
public static class ReferenceLayout
{
    /// <summary>The item text-embedding files of the layout (row = internal id, row 0 = pad); the embeddings job
    /// writes them and training reads them, so both name them from here.</summary>
    public const string PhotoEmbeddingsFile = "photo_embs.npy", CommentEmbeddingsFile = "comment_embs.npy";

    /// <summary>Loads the whole dataset; throws <see cref="DatasetValidationException"/> listing every problem.
    /// Repeat interactions are data (MODEL.md §1.1): accepted, see <see cref="ReadWithWarnings"/>.</summary>
    public static LsvcrDataset Read(string dir, IProgress<JobProgress>? progress = null) => ReadWithWarnings(dir, progress).Dataset;

    /// <summary><see cref="Read"/>, also returning the warnings (repeat interactions, file:line each).</summary>
    public static (LsvcrDataset Dataset, IReadOnlyList<DatasetProblem> Warnings) ReadWithWarnings(string dir, IProgress<JobProgress>? progress = null)
    {
        var loader = new LayoutLoader(dir, progress);
        loader.Load(examples: true);
        if (loader.Problems.Count > 0 || loader.Catalog is null) throw new DatasetValidationException(loader.Problems);
        return (new LsvcrDataset(loader.Catalog, loader.Sets), loader.Warnings);
    }

    /// <summary>Loads only the items (id lists, photo.json, comment.json) — what embedding needs.</summary>
    public static Catalog ReadCatalog(string dir, IProgress<JobProgress>? progress = null)
    {
        var loader = new LayoutLoader(dir, progress);
        loader.Load(examples: false);
        if (loader.Problems.Count > 0 || loader.Catalog is null) throw new DatasetValidationException(loader.Problems);
        return loader.Catalog;
    }

    /// <summary>
    /// Writes every file of the layout into a staging folder inside <paramref name="dir"/> and only then renames them
    /// into place, so a failure midway leaves the previous files untouched. All six split files are written (empty
    /// ones included) so no stale split of an older dataset survives next to the new one.
    /// </summary>
    public static void Write(LsvcrDataset dataset, string dir, IProgress<JobProgress>? progress = null)
    {
        Directory.CreateDirectory(dir);
        var staging = Path.Combine(dir, $".lsvcr-write-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            var catalog = dataset.Catalog;
            var photoIds = new IdWriter(catalog.PhotoIds);
            var commentIds = new IdWriter(catalog.CommentIds);
            long total = 4 + dataset.Sets.Sum(s => (long)s.Count), done = 0;
            void Step(long n = 1)
            {
                done += n;
                if (n > 1 || done % 4096 == 0) progress?.Report(new("write", done, total));
            }

            IdLists.Write(Path.Combine(staging, LayoutLoader.PhotosPkl), catalog.PhotoIds);
            IdLists.Write(Path.Combine(staging, LayoutLoader.CommentsPkl), catalog.CommentIds);
            Step(2);
            WriteJson(Path.Combine(staging, LayoutLoader.PhotoJson), w =>
            {
                w.WriteStartObject();
                for (int p = 1; p < catalog.PhotoCount; p++)
                {
                    w.WriteStartObject(catalog.PhotoIds[p]);
                    w.WriteString("title", catalog.PhotoTitles[p]);
                    w.WriteStartArray("comment_list");
                    foreach (int c in catalog.CommentsOf(p)) commentIds.Write(w, c);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            });
            Step();
            WriteJson(Path.Combine(staging, LayoutLoader.CommentJson), w =>
            {
                w.WriteStartObject();
                for (int c = 1; c < catalog.CommentCount; c++)
                {
                    w.WriteStartObject(catalog.CommentIds[c]);
                    w.WriteString("content", catalog.CommentTexts[c]);
                    w.WriteEndObject();
                }
                w.WriteEndObject();
            });
            Step();
            foreach (var set in dataset.Sets)
                WriteExamples(Path.Combine(staging, TaskNames.FileName(set.Task, set.Split)), set, photoIds, commentIds, () => Step());

            foreach (var file in Directory.GetFiles(staging))
                File.Move(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
            progress?.Report(new("write", total, total));
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    // Relaxed escaping keeps non-ASCII text readable in the files; the output is still strict JSON.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };

    private static void WriteJson(string path, Action<Utf8JsonWriter> write)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var writer = new Utf8JsonWriter(stream, WriterOptions);
        write(writer);
    }

    private static void WriteExamples(string path, ExampleSet set, IdWriter photos, IdWriter comments, Action step)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        using var w = new Utf8JsonWriter(stream, WriterOptions);
        var users = new IdWriter(set.UserIds, pad: false);
        for (int i = 0; i < set.Count; i++)
        {
            w.WriteStartObject();
            w.WritePropertyName("user_id"u8);
            users.Write(w, i);
            w.WritePropertyName("target_photo"u8);
            photos.Write(w, set.TargetPhoto[i]);
            w.WriteStartArray("photo_inter_his"u8);
            foreach (int p in set.PhotoHistoryOf(i)) photos.Write(w, p);
            w.WriteEndArray();
            var (start, end) = set.CommentEntriesOf(i);
            w.WriteStartArray("comment_inter_his"u8);
            w.WriteStartArray();
            for (int e = start; e < end; e++) photos.Write(w, set.CommentHistoryPhoto[e]);
            w.WriteEndArray();
            w.WriteStartArray();
            for (int e = start; e < end; e++)
            {
                w.WriteStartArray();
                foreach (int c in set.CommentsOfEntry(e)) comments.Write(w, c);
                w.WriteEndArray();
            }
            w.WriteEndArray();
            w.WriteEndArray();
            if (set.Task == TaskKind.CommRank)
            {
                w.WriteStartArray("pos_comments"u8);
                foreach (int c in set.PositivesOf(i)) comments.Write(w, c);
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.Flush();
            stream.WriteByte((byte)'\n');
            w.Reset(stream);
            step();
        }
    }

    /// <summary>Writes ids as JSON numbers when the whole list is canonical integers (as the pickles are), else as strings.</summary>
    private sealed class IdWriter
    {
        private readonly long[]? _numbers;
        private readonly string[] _ids;

        public IdWriter(string[] ids, bool pad = true)
        {
            _ids = ids;
            bool numeric = pad ? IdLists.AllCanonicalIntegers(ids) : ids.All(IdLists.IsCanonicalInteger);
            if (numeric)
                _numbers = ids.Select((id, i) => pad && i == 0 ? 0 : long.Parse(id, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        }

        public void Write(Utf8JsonWriter w, int index)
        {
            if (_numbers is not null) w.WriteNumberValue(_numbers[index]);
            else w.WriteStringValue(_ids[index]);
        }
    }
}

/// <summary>Checks a dataset folder without throwing: every problem with its file and line (empty when valid).</summary>
public static class DatasetValidator
{
    public static IReadOnlyList<DatasetProblem> Validate(string dir, IProgress<JobProgress>? progress = null) => Check(dir, progress).Problems;

    /// <summary>Problems (errors) and warnings (repeat interactions, which are data: MODEL.md §1.1).</summary>
    public static (IReadOnlyList<DatasetProblem> Problems, IReadOnlyList<DatasetProblem> Warnings) Check(string dir, IProgress<JobProgress>? progress = null)
    {
        var loader = new LayoutLoader(dir, progress);
        loader.Load(examples: true);
        return (loader.Problems, loader.Warnings);
    }
}
