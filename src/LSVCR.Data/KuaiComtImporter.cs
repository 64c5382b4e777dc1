using System.Globalization;
using System.Runtime.InteropServices;
using CsvHelper;

namespace LSVCR.Data;

public sealed record KuaiComtOptions
{
    /// <summary>Users with fewer kept interactions (liked videos + liked/replied comments) are dropped.</summary>
    public int MinInteractions { get; init; } = 5;
    /// <summary>Histories keep only their most recent entries.</summary>
    public int MaxHistory { get; init; } = 50;
}

/// <summary>What an import kept and what it dropped, with a count per reason.</summary>
public sealed class ImportReport
{
    public long Users { get; set; }
    public long Videos { get; set; }
    public long Comments { get; set; }
    public long LikedVideos { get; set; }
    public long CommentInteractions { get; set; }
    public SortedDictionary<string, long> Dropped { get; } = new(StringComparer.Ordinal);

    internal void Drop(string reason, long count = 1)
    {
        if (count > 0) Dropped[reason] = Dropped.GetValueOrDefault(reason) + count;
    }
}

/// <summary>
/// Converts the KuaiComt CSV release into the reference layout (docs/data.md, "KuaiComt import"): video history =
/// liked videos in time order; comment history = per video, the comments liked or replied to, ordered by first
/// interaction; every example sees only interactions strictly before its target; per user and task the last target
/// is test, the second-to-last val. Video times are milliseconds, comment times seconds: both are compared in ms.
/// </summary>
public static class KuaiComtImporter
{
    public const string VideoInter = "user_video_inter.csv", CommentInter = "user_comment_inter.csv",
        VideoFeatures = "video_features.csv", CommentFeatures = "comment_features.csv", UserFeatures = "user_features.csv";

    public static (LsvcrDataset Dataset, ImportReport Report) Import(string inDir, KuaiComtOptions? options = null, IProgress<JobProgress>? progress = null)
    {
        options ??= new KuaiComtOptions();
        if (options.MaxHistory < 1) throw new LsvcrException($"MaxHistory (the kept history length) must be at least 1 (got {options.MaxHistory})");
        if (!Directory.Exists(inDir)) throw new LsvcrException($"{inDir}: input directory does not exist");
        var report = new ImportReport();

        // Items.
        var videoIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var videoIds = new List<string>();
        var captions = new List<string>();
        Csv.Read(inDir, VideoFeatures, ["video_id", "caption"], progress, row =>
        {
            var id = row.Id(0);
            if (!videoIndex.TryAdd(id, videoIds.Count)) { report.Drop("video_features: duplicate video row"); return; }
            videoIds.Add(id);
            captions.Add(row.Text(1));
        });
        var commentIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var commentIds = new List<string>();
        var commentTexts = new List<string>();
        var commentVideo = new List<int>();
        var commentLikes = new List<double>();
        Csv.Read(inDir, CommentFeatures, ["comment_id", "comment_content", "video_id", "comment_like_cnt"], progress, row =>
        {
            var id = row.Id(0);
            if (!videoIndex.TryGetValue(row.Id(2), out int video)) { report.Drop("comment_features: comment of a video missing from video_features"); return; }
            if (!commentIndex.TryAdd(id, commentIds.Count)) { report.Drop("comment_features: duplicate comment row"); return; }
            commentIds.Add(id);
            commentTexts.Add(row.Text(1));
            commentVideo.Add(video);
            commentLikes.Add(row.Number(3));
        });
        var userFeatures = Path.Combine(inDir, UserFeatures);
        if (File.Exists(userFeatures)) Csv.Read(inDir, UserFeatures, ["user_id"], progress, _ => { }); // checked, not needed by the mapping

        // Interactions (times in ms).
        var userIndex = new Dictionary<string, int>(StringComparer.Ordinal);
        var userIds = new List<string>();
        int User(string id)
        {
            if (userIndex.TryGetValue(id, out int u)) return u;
            userIds.Add(id);
            return userIndex[id] = userIds.Count - 1;
        }
        var likes = new List<Event>();
        Csv.Read(inDir, VideoInter, ["user_id", "video_id", "time_ms", "is_like"], progress, row =>
        {
            if (!row.Flag(3)) { report.Drop("user_video_inter: not liked (not an interaction)"); return; }
            if (!videoIndex.TryGetValue(row.Id(1), out int video)) { report.Drop("user_video_inter: video missing from video_features"); return; }
            likes.Add(new Event(User(row.Id(0)), row.Time(2, 1), video, -1, likes.Count));
        });
        var comments = new List<Event>();
        Csv.Read(inDir, CommentInter, ["user_id", "comment_id", "time_stamp", "photo_id", "is_like", "is_reply"], progress, row =>
        {
            if (!row.Flag(4) && !row.Flag(5)) { report.Drop("user_comment_inter: neither liked nor replied (not an interaction)"); return; }
            if (!commentIndex.TryGetValue(row.Id(1), out int comment)) { report.Drop("user_comment_inter: comment missing from comment_features"); return; }
            if (!videoIndex.TryGetValue(row.Id(3), out int video) || video != commentVideo[comment])
            {
                report.Drop("user_comment_inter: photo_id differs from the comment's video");
                return;
            }
            comments.Add(new Event(User(row.Id(0)), row.Time(2, 1000), video, comment, comments.Count));
        });

        // Earliest interaction per (user, item) only; then per user in time order (file order breaks ties).
        var likesByUser = Dedupe(likes, e => ((long)e.User << 32) | (uint)e.Video, report, "user_video_inter: repeated like of the same video");
        var commentsByUser = Dedupe(comments, e => ((long)e.User << 32) | (uint)e.Comment, report, "user_comment_inter: repeated interaction with the same comment");

        var keepUser = new bool[userIds.Count];
        for (int u = 0; u < userIds.Count; u++)
        {
            int count = Count(likesByUser, u) + Count(commentsByUser, u);
            keepUser[u] = count >= options.MinInteractions;
            if (!keepUser[u])
            {
                report.Drop($"users with fewer than {options.MinInteractions} interactions");
                report.Drop("interactions of dropped users", count);
            }
        }

        // Catalogue: videos some kept user interacted with, in video_features order, and all their comments.
        var usedVideo = new bool[videoIds.Count];
        foreach (var e in likesByUser.Events) usedVideo[e.Video] |= keepUser[e.User];
        foreach (var e in commentsByUser.Events) usedVideo[e.Video] |= keepUser[e.User];
        var catalog = BuildCatalog(videoIds, captions, usedVideo, commentIds, commentTexts, commentVideo, commentLikes, out var photoOf, out var commentOf);
        report.Drop("videos without kept interactions (left out of the catalogue)", usedVideo.Count(u => !u));
        report.Videos = catalog.PhotoCount - 1;
        report.Comments = catalog.CommentCount - 1;

        var builder = new ExamplesFromTimelines(options.MaxHistory, report);
        for (int u = 0; u < userIds.Count; u++)
        {
            if (!keepUser[u]) continue;
            report.Users++;
            builder.AddUser(userIds[u], likesByUser.Of(u), commentsByUser.Of(u), photoOf, commentOf);
            if (u % 10_000 == 0) progress?.Report(new("build examples", u, userIds.Count));
        }
        progress?.Report(new("build examples", userIds.Count, userIds.Count));
        return (new LsvcrDataset(catalog, builder.Build()), report);
    }

    internal readonly record struct Event(int User, long Time, int Video, int Comment, int Row);

    /// <summary>Events grouped per user (CSR), each user's in time order.</summary>
    private sealed class ByUser(Event[] events, int[] offsets)
    {
        public Event[] Events => events;
        public ReadOnlySpan<Event> Of(int user) => user + 1 < offsets.Length ? events.AsSpan(offsets[user], offsets[user + 1] - offsets[user]) : default;
    }

    private static int Count(ByUser g, int user) => g.Of(user).Length;

    private static ByUser Dedupe(List<Event> events, Func<Event, long> key, ImportReport report, string reason)
    {
        var span = CollectionsMarshal.AsSpan(events);
        span.Sort((a, b) => a.User != b.User ? a.User.CompareTo(b.User) : a.Time != b.Time ? a.Time.CompareTo(b.Time) : a.Row.CompareTo(b.Row));
        var seen = new HashSet<long>();
        var kept = new List<Event>(events.Count);
        var offsets = new List<int> { 0 };
        int user = 0;
        foreach (var e in span)
        {
            while (user < e.User) { offsets.Add(kept.Count); user++; seen.Clear(); }
            if (seen.Add(key(e))) kept.Add(e);
            else report.Drop(reason);
        }
        offsets.Add(kept.Count);
        return new ByUser([.. kept], [.. offsets]);
    }

    private static Catalog BuildCatalog(List<string> videoIds, List<string> captions, bool[] usedVideo,
        List<string> commentIds, List<string> commentTexts, List<int> commentVideo, List<double> commentLikes,
        out int[] photoOf, out int[] commentOf)
    {
        photoOf = new int[videoIds.Count];
        var photoIds = new List<string> { Catalog.PadId };
        var titles = new List<string> { "" };
        for (int v = 0; v < videoIds.Count; v++)
        {
            if (!usedVideo[v]) continue;
            photoOf[v] = photoIds.Count;
            photoIds.Add(videoIds[v]);
            titles.Add(captions[v]);
        }
        var perVideo = new List<int>[photoIds.Count];
        for (int c = 0; c < commentIds.Count; c++)
            if (photoOf[commentVideo[c]] is > 0 and var p) (perVideo[p] ??= []).Add(c);
        commentOf = new int[commentIds.Count];
        var ids = new List<string> { Catalog.PadId };
        var texts = new List<string> { "" };
        var offsets = new int[photoIds.Count + 1];
        var list = new List<int>();
        for (int p = 1; p < photoIds.Count; p++)
        {
            var cs = perVideo[p] ?? [];
            // Popularity order: like count descending, then comment id (numerically when both are numbers).
            cs.Sort((a, b) => commentLikes[a] != commentLikes[b] ? commentLikes[b].CompareTo(commentLikes[a]) : CompareIds(commentIds[a], commentIds[b]));
            foreach (int c in cs)
            {
                commentOf[c] = ids.Count;
                list.Add(ids.Count);
                ids.Add(commentIds[c]);
                texts.Add(commentTexts[c]);
            }
            offsets[p + 1] = list.Count;
        }
        return new Catalog([.. photoIds], [.. titles], offsets, [.. list], [.. ids], [.. texts]);
    }

    private static int CompareIds(string a, string b) =>
        long.TryParse(a, CultureInfo.InvariantCulture, out long x) && long.TryParse(b, CultureInfo.InvariantCulture, out long y)
            ? x.CompareTo(y) : string.CompareOrdinal(a, b);

    /// <summary>Turns each user's time-ordered likes and comment interactions into examples of both tasks.</summary>
    private sealed class ExamplesFromTimelines(int maxHistory, ImportReport report)
    {
        private readonly Dictionary<(TaskKind, Split), ExampleSetBuilder> _builders =
            Enum.GetValues<TaskKind>().SelectMany(t => Enum.GetValues<Split>().Select(s => (t, s)))
                .ToDictionary(k => k, k => new ExampleSetBuilder(k.t, k.s));
        private readonly List<(int Photo, long Time, int Entry)> _targets = [];
        private readonly List<int> _photos = [], _entryPhotos = [], _entryLengths = [], _entryComments = [], _positives = [];
        // Comment entries of the current user in first-interaction order: video, first time, its interactions in time order.
        private readonly List<(int Photo, long First, List<(long Time, int Comment)> Comments)> _entries = [];
        private readonly Dictionary<int, int> _entryOf = [];

        public IEnumerable<ExampleSet> Build() => _builders.Values.Select(b => b.Build());

        public void AddUser(string user, ReadOnlySpan<Event> likes, ReadOnlySpan<Event> comments, int[] photoOf, int[] commentOf)
        {
            report.LikedVideos += likes.Length;
            report.CommentInteractions += comments.Length;
            _entries.Clear();
            _entryOf.Clear();
            foreach (var e in comments)
            {
                int photo = photoOf[e.Video];
                if (!_entryOf.TryGetValue(photo, out int entry))
                {
                    _entryOf[photo] = entry = _entries.Count;
                    _entries.Add((photo, e.Time, []));
                }
                _entries[entry].Comments.Add((e.Time, commentOf[e.Comment]));
            }

            // Rec: every liked video is a target.
            _targets.Clear();
            foreach (var e in likes) _targets.Add((photoOf[e.Video], e.Time, -1));
            Emit(user, TaskKind.Rec, likes, photoOf);
            // CommRank: every video whose comments the user interacted with, at the first such interaction.
            _targets.Clear();
            for (int i = 0; i < _entries.Count; i++) _targets.Add((_entries[i].Photo, _entries[i].First, i));
            Emit(user, TaskKind.CommRank, likes, photoOf);
        }

        private void Emit(string user, TaskKind task, ReadOnlySpan<Event> likes, int[] photoOf)
        {
            int kept = 0;
            var valid = new List<int>();
            for (int t = 0; t < _targets.Count; t++)
            {
                if (HasHistory(_targets[t].Time, likes)) valid.Add(t);
                else report.Drop($"{task} targets without any earlier interaction");
            }
            foreach (int t in valid)
            {
                var (photo, time, entry) = _targets[t];
                var split = kept == valid.Count - 1 ? Split.Test : kept == valid.Count - 2 ? Split.Val : Split.Train;
                kept++;
                FillHistories(time, likes, photoOf);
                _positives.Clear();
                if (entry >= 0) foreach (var (_, c) in _entries[entry].Comments) _positives.Add(c);
                _builders[(task, split)].Add(user, photo, CollectionsMarshal.AsSpan(_photos), CollectionsMarshal.AsSpan(_entryPhotos),
                    CollectionsMarshal.AsSpan(_entryLengths), CollectionsMarshal.AsSpan(_entryComments), CollectionsMarshal.AsSpan(_positives));
            }
        }

        private bool HasHistory(long time, ReadOnlySpan<Event> likes) =>
            (likes.Length > 0 && likes[0].Time < time) || (_entries.Count > 0 && _entries[0].First < time);

        /// <summary>Histories from interactions strictly before <paramref name="time"/>, most recent <c>maxHistory</c> kept.</summary>
        private void FillHistories(long time, ReadOnlySpan<Event> likes, int[] photoOf)
        {
            _photos.Clear();
            int before = 0;
            while (before < likes.Length && likes[before].Time < time) before++;
            for (int i = Math.Max(0, before - maxHistory); i < before; i++) _photos.Add(photoOf[likes[i].Video]);

            _entryPhotos.Clear(); _entryLengths.Clear(); _entryComments.Clear();
            int entries = 0;
            while (entries < _entries.Count && _entries[entries].First < time) entries++; // entries are in first-time order
            for (int e = Math.Max(0, entries - maxHistory); e < entries; e++)
            {
                int n = 0;
                foreach (var (t, c) in _entries[e].Comments)
                    if (t < time) { _entryComments.Add(c); n++; }
                _entryPhotos.Add(_entries[e].Photo);
                _entryLengths.Add(n);
            }
        }
    }

    /// <summary>CsvHelper over one file: checks the header, hands each row over, and names file and line in every error.</summary>
    private static class Csv
    {
        private static readonly CsvReaderOptions Options = new()
        {
            Separator = ',',
            TrackLineNumbers = true,
            TrimWhitespace = true,
            MalformedData = CsvMalformedDataHandling.Throw,
            FieldCountMismatch = CsvFieldCountHandling.Throw,
        };

        public static void Read(string dir, string file, string[] columns, IProgress<JobProgress>? progress, Action<Row> handle)
        {
            var path = Path.Combine(dir, file);
            if (!File.Exists(path)) throw new LsvcrException($"{path}: required KuaiComt file is missing");
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            long length = stream.Length, rows = 0;
            using var csv = CsvReader.Create(stream, Options, false);
            try
            {
                var headers = csv.Headers;
                if (headers.Count == 0) throw new LsvcrException($"{file}: file is empty (expected a header row)");
                var indices = new int[columns.Length];
                for (int i = 0; i < columns.Length; i++)
                    if (!csv.TryGetFieldIndex(columns[i], out indices[i]))
                        throw new LsvcrException($"{file}: required column '{columns[i]}' is missing (header: {string.Join(", ", headers)})");
                var row = new Row(csv, file, columns, indices);
                while (csv.Read())
                {
                    handle(row);
                    if (++rows % 200_000 == 0) progress?.Report(new($"read {file}", stream.Position, length));
                }
            }
            catch (CsvFormatException e)
            {
                throw new LsvcrException($"{file}:{(e.LineNumber > 0 ? e.LineNumber : e.RecordNumber)}: malformed CSV: {e.Message}", e);
            }
            progress?.Report(new($"read {file}", length, length));
        }
    }

    private sealed class Row(CsvReader csv, string file, string[] columns, int[] indices)
    {
        private string Raw(int column) => csv.GetString(indices[column]);

        public string Id(int column)
        {
            var v = Raw(column);
            if (v.Length == 0) throw Bad(column, v, "id is empty");
            // Ids exported by pandas may carry a float suffix ("123.0"); ids are matched by their integer string form.
            return v.EndsWith(".0", StringComparison.Ordinal) && long.TryParse(v.AsSpan(0, v.Length - 2), CultureInfo.InvariantCulture, out long n)
                ? n.ToString(CultureInfo.InvariantCulture) : v;
        }

        public string Text(int column) => Raw(column);

        public double Number(int column)
        {
            var v = Raw(column);
            if (v.Length == 0) return 0;
            return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : throw Bad(column, v, "is not a number");
        }

        public long Time(int column, long toMs)
        {
            var v = Raw(column);
            if (long.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out long t)) return checked(t * toMs);
            return double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d)
                ? (long)Math.Round(d * toMs) : throw Bad(column, v, "is not a timestamp");
        }

        public bool Flag(int column) => Raw(column) switch
        {
            "1" or "1.0" or "True" or "true" => true,
            "0" or "0.0" or "False" or "false" or "" => false,
            var v => throw Bad(column, v, "is not a 0/1 flag"),
        };

        private LsvcrException Bad(int column, string value, string problem) =>
            new($"{file}:{csv.LineNumber}: column '{columns[column]}' value '{value}' {problem}");
    }
}
