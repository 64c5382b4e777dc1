using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace LSVCR.Data;

/// <summary>
/// The one parser of the reference layout, shared by <see cref="ReferenceLayout"/> (which throws on problems) and
/// <see cref="DatasetValidator"/> (which lists them). It never stops at the first problem: every file is read to the
/// end and each bad line is reported with its 1-based line number. JSON lines are parsed with
/// <see cref="Utf8JsonReader"/> straight into reusable scratch buffers and then the CSR builders, so loading
/// costs no per-line object tree.
/// </summary>
internal sealed class LayoutLoader
{
    public const string PhotosPkl = "all_photos.pkl", CommentsPkl = "all_comments.pkl", PhotoJson = "photo.json", CommentJson = "comment.json";

    private const int ProgressStep = 8 << 20;
    private readonly string _dir;
    private readonly IProgress<JobProgress>? _progress;
    private long _bytesTotal, _bytesDone, _bytesReported;

    private string[] _photoIds = [], _commentIds = [];
    private Dictionary<string, int> _photoIndex = [], _commentIndex = [];
    private Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _photoLookup, _commentLookup;
    // When every id of a list is a canonical integer, JSON number ids are looked up without decoding text.
    private NumberIndex? _photoNumbers, _commentNumbers;
    private string[] _titles = [], _texts = [];
    private int[] _listOffsets = [], _listComments = [];

    public LayoutLoader(string dir, IProgress<JobProgress>? progress)
    {
        _dir = dir;
        _progress = progress;
    }

    public List<DatasetProblem> Problems { get; } = [];
    public Catalog? Catalog { get; private set; }
    public List<ExampleSet> Sets { get; } = [];
    /// <summary>Findings that are not errors: repeat interactions (a held-out target the user already met in training;
    /// MODEL.md §1.1 — real logs have them and the reference accepts them).</summary>
    public List<DatasetProblem> Warnings { get; } = [];

    /// <summary>1-based file line of every loaded example, per set (for problems found across sets).</summary>
    public Dictionary<(TaskKind, Split), int[]> Lines { get; } = [];

    public void Load(bool examples)
    {
        if (!Directory.Exists(_dir))
        {
            Problems.Add(new(_dir, null, "dataset directory does not exist"));
            return;
        }
        string[] files = [PhotosPkl, CommentsPkl, PhotoJson, CommentJson,
            .. examples ? Enum.GetValues<TaskKind>().SelectMany(t => Enum.GetValues<Split>().Select(s => TaskNames.FileName(t, s))) : []];
        _bytesTotal = files.Sum(Size);

        var photoIds = IdLists.Read(Path.Combine(_dir, PhotosPkl), PhotosPkl, Problems);
        var commentIds = IdLists.Read(Path.Combine(_dir, CommentsPkl), CommentsPkl, Problems);
        Advance(Size(PhotosPkl) + Size(CommentsPkl));
        if (photoIds is null || commentIds is null)
        {
            foreach (var f in new[] { PhotoJson, CommentJson })
                if (!File.Exists(Path.Combine(_dir, f))) Problems.Add(new(f, null, "file is missing (required)"));
            return;
        }
        _photoIds = photoIds;
        _commentIds = commentIds;
        _photoIndex = Index(photoIds);
        _commentIndex = Index(commentIds);
        _photoLookup = _photoIndex.GetAlternateLookup<ReadOnlySpan<char>>();
        _commentLookup = _commentIndex.GetAlternateLookup<ReadOnlySpan<char>>();
        _photoNumbers = NumericIndex(photoIds);
        _commentNumbers = NumericIndex(commentIds);
        ReadPhotoJson();
        ReadCommentJson();
        bool catalogOk = Problems.Count == 0;
        if (examples)
        {
            foreach (var task in Enum.GetValues<TaskKind>())
                foreach (var split in Enum.GetValues<Split>())
                    ReadExamples(task, split);
            CheckLeakage();
        }
        if (catalogOk)
            Catalog = new Catalog(_photoIds, _titles, _listOffsets, _listComments, _commentIds, _texts);
        _progress?.Report(new("load", _bytesTotal, _bytesTotal));
    }

    private long Size(string file) => File.Exists(Path.Combine(_dir, file)) ? new FileInfo(Path.Combine(_dir, file)).Length : 0;

    private void Advance(long bytes)
    {
        _bytesDone += bytes;
        if (_bytesDone - _bytesReported < ProgressStep) return;
        _bytesReported = _bytesDone;
        _progress?.Report(new("load", _bytesDone, _bytesTotal));
    }

    private static NumberIndex? NumericIndex(string[] ids) => IdLists.AllCanonicalIntegers(ids) ? new NumberIndex(ids) : null;

    /// <summary>Integer id → internal id: a flat array when the ids are small and dense enough, else a dictionary.</summary>
    private sealed class NumberIndex
    {
        private readonly int[]? _dense;
        private readonly Dictionary<long, int>? _sparse;

        public NumberIndex(string[] ids)
        {
            var numbers = new long[ids.Length];
            for (int i = 1; i < ids.Length; i++) numbers[i] = long.Parse(ids[i], System.Globalization.CultureInfo.InvariantCulture);
            long min = ids.Length > 1 ? numbers[1..].Min() : 0, max = ids.Length > 1 ? numbers[1..].Max() : 0;
            if (min >= 0 && max < Math.Max(1024, 8L * ids.Length))
            {
                _dense = new int[max + 1];
                for (int i = ids.Length - 1; i >= 1; i--) _dense[numbers[i]] = i; // first occurrence wins, as in the string index
            }
            else
            {
                _sparse = new Dictionary<long, int>(ids.Length);
                for (int i = 1; i < ids.Length; i++) _sparse.TryAdd(numbers[i], i);
            }
        }

        public bool TryGetValue(long number, out int id)
        {
            if (_dense is not null)
            {
                id = (ulong)number < (ulong)_dense.Length ? _dense[number] : 0;
                return id > 0;
            }
            return _sparse!.TryGetValue(number, out id);
        }
    }

    private static Dictionary<string, int> Index(string[] ids)
    {
        var index = new Dictionary<string, int>(ids.Length, StringComparer.Ordinal);
        for (int i = 0; i < ids.Length; i++) index.TryAdd(ids[i], i);
        return index;
    }

    // ---------------------------------------------------------------- photo.json / comment.json

    private byte[]? ReadAll(string file)
    {
        var path = Path.Combine(_dir, file);
        if (!File.Exists(path))
        {
            Problems.Add(new(file, null, "file is missing (required)"));
            return null;
        }
        var bytes = File.ReadAllBytes(path);
        Advance(bytes.Length);
        return bytes;
    }

    private void ReadPhotoJson()
    {
        _titles = new string[_photoIds.Length];
        _titles[0] = "";
        var listStart = new int[_photoIds.Length];
        var listLength = new int[_photoIds.Length];
        var seen = new bool[_photoIds.Length];
        var flat = new List<int>();
        var bytes = ReadAll(PhotoJson);
        if (bytes is null) return;
        var lines = new LineCounter(bytes);
        ForEachEntry(bytes, PhotoJson, lines, (ref Utf8JsonReader r, string key, int line) =>
        {
            int photo = EntryId(key, _photoIndex, PhotoJson, line, "video", PhotosPkl, seen);
            string? title = null;
            bool hasList = false, badTitle = false;
            int start = flat.Count;
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                if (r.ValueTextEquals("title"u8))
                {
                    r.Read();
                    if (r.TokenType == JsonTokenType.String) title = r.GetString();
                    else { badTitle = true; Problems.Add(new(PhotoJson, lines.LineOf(r.TokenStartIndex), $"video '{key}': \"title\" must be a string")); r.Skip(); }
                }
                else if (r.ValueTextEquals("comment_list"u8))
                {
                    r.Read();
                    hasList = true;
                    ReadIds(ref r, IdKind.Comment, flat, new LineRef(PhotoJson, lines.LineOf(r.TokenStartIndex)), $"comment_list of video '{key}'");
                }
                else { r.Read(); r.Skip(); }
            }
            if (title is null && !badTitle) Problems.Add(new(PhotoJson, line, $"video '{key}' has no \"title\""));
            if (!hasList) Problems.Add(new(PhotoJson, line, $"video '{key}' has no \"comment_list\""));
            if (photo > 0)
            {
                _titles[photo] = title ?? "";
                listStart[photo] = start;
                listLength[photo] = flat.Count - start;
            }
        });
        for (int p = 1; p < _photoIds.Length; p++)
            if (!seen[p]) Problems.Add(new(PhotoJson, null, $"video '{_photoIds[p]}' (all_photos.pkl index {p}) has no entry"));
        _listOffsets = new int[_photoIds.Length + 1];
        _listComments = new int[_photoIds.Length == 0 ? 0 : listLength.Sum()];
        var flatSpan = CollectionsMarshal.AsSpan(flat);
        for (int p = 0; p < _photoIds.Length; p++)
        {
            flatSpan.Slice(listStart[p], listLength[p]).CopyTo(_listComments.AsSpan(_listOffsets[p]));
            _listOffsets[p + 1] = _listOffsets[p] + listLength[p];
        }
        _titles = Array.ConvertAll(_titles, t => t ?? "");
    }

    private void ReadCommentJson()
    {
        _texts = new string[_commentIds.Length];
        _texts[0] = "";
        var seen = new bool[_commentIds.Length];
        var bytes = ReadAll(CommentJson);
        if (bytes is null) return;
        var lines = new LineCounter(bytes);
        ForEachEntry(bytes, CommentJson, lines, (ref Utf8JsonReader r, string key, int line) =>
        {
            int comment = EntryId(key, _commentIndex, CommentJson, line, "comment", CommentsPkl, seen);
            string? content = null;
            bool badType = false;
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                bool isContent = r.ValueTextEquals("content"u8);
                r.Read();
                if (!isContent) { r.Skip(); continue; }
                if (r.TokenType == JsonTokenType.String) content = r.GetString();
                else { badType = true; Problems.Add(new(CommentJson, lines.LineOf(r.TokenStartIndex), $"comment '{key}': \"content\" must be a string")); r.Skip(); }
            }
            if (content is null && !badType) Problems.Add(new(CommentJson, line, $"comment '{key}' has no \"content\""));
            if (comment > 0) _texts[comment] = content ?? "";
        });
        for (int c = 1; c < _commentIds.Length; c++)
            if (!seen[c]) Problems.Add(new(CommentJson, null, $"comment '{_commentIds[c]}' (all_comments.pkl index {c}) has no entry"));
        _texts = Array.ConvertAll(_texts, t => t ?? "");
    }

    private int EntryId(string key, Dictionary<string, int> index, string file, int line, string what, string pkl, bool[] seen)
    {
        if (key == Catalog.PadId)
        {
            Problems.Add(new(file, line, $"the pad id '{Catalog.PadId}' must not have an entry"));
            return -1;
        }
        if (!index.TryGetValue(key, out int id))
        {
            Problems.Add(new(file, line, $"{what} '{key}' is not in {pkl}"));
            return -1;
        }
        if (seen[id])
        {
            Problems.Add(new(file, line, $"duplicate entry for {what} '{key}'"));
            return -1;
        }
        seen[id] = true;
        return id;
    }

    private delegate void EntryHandler(ref Utf8JsonReader reader, string key, int line);

    /// <summary>Walks a top-level <c>{id: {...}}</c> object; the handler is positioned on each value's StartObject.</summary>
    private void ForEachEntry(byte[] bytes, string file, LineCounter lines, EntryHandler handle)
    {
        try
        {
            var r = new Utf8JsonReader(SkipBom(bytes));
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
            {
                Problems.Add(new(file, 1, "expected a JSON object mapping ids to entries"));
                return;
            }
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                var key = r.GetString()!;
                int line = lines.LineOf(r.TokenStartIndex + Bom(bytes));
                r.Read();
                if (r.TokenType != JsonTokenType.StartObject)
                {
                    Problems.Add(new(file, line, $"entry '{key}' must be a JSON object"));
                    r.Skip();
                    continue;
                }
                handle(ref r, key, line);
            }
            if (r.Read()) Problems.Add(new(file, lines.LineOf(r.TokenStartIndex), "unexpected content after the top-level object"));
        }
        catch (JsonException e)
        {
            Problems.Add(new(file, (int)(e.LineNumber ?? 0) + 1, $"malformed JSON: {JsonMessage(e)}"));
        }
    }

    internal static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];
    private static int Bom(ReadOnlySpan<byte> bytes) => bytes.StartsWith(Utf8Bom) ? 3 : 0;
    private static ReadOnlySpan<byte> SkipBom(ReadOnlySpan<byte> bytes) => bytes[Bom(bytes)..];

    private static string JsonMessage(JsonException e)
    {
        var m = e.Message;
        int cut = m.IndexOf(" LineNumber:", StringComparison.Ordinal);
        return cut > 0 ? m[..cut] : m;
    }

    /// <summary>Maps byte offsets to 1-based lines; offsets are asked in increasing order, so one pass in total.</summary>
    private sealed class LineCounter(byte[] bytes)
    {
        private long _pos;
        private int _line = 1;

        public int LineOf(long offset)
        {
            if (offset < _pos) { _pos = 0; _line = 1; }
            long end = Math.Min(offset, bytes.Length);
            _line += bytes.AsSpan((int)_pos, (int)(end - _pos)).Count((byte)'\n');
            _pos = end;
            return _line;
        }
    }

    // ---------------------------------------------------------------- ids inside JSON

    private enum IdKind { Photo, Comment }

    private readonly record struct LineRef(string File, int Line);

    /// <summary>Resolves the id token under the reader (int or string, matched by string form); -1 with a problem if it can't.</summary>
    private int ReadId(ref Utf8JsonReader r, IdKind kind, LineRef at, string field)
    {
        string what = kind == IdKind.Photo ? "video" : "comment";
        if (r.TokenType is not (JsonTokenType.String or JsonTokenType.Number))
        {
            Problems.Add(new(at.File, at.Line, $"{field}: expected a {what} id (int or string), found {Describe(r.TokenType)}"));
            r.Skip();
            return -1;
        }
        var numbers = kind == IdKind.Photo ? _photoNumbers : _commentNumbers;
        if (numbers is not null && r.TokenType == JsonTokenType.Number && r.TryGetInt64(out long number) && r.ValueSpan[0] != (byte)'-'
            && numbers.TryGetValue(number, out int known))
            return known;
        Span<char> buffer = stackalloc char[128];
        scoped ReadOnlySpan<char> text;
        string? allocated = null;
        if (r.TokenType == JsonTokenType.String && r.ValueIsEscaped || r.ValueSpan.Length > buffer.Length)
            text = allocated = r.TokenType == JsonTokenType.String ? r.GetString()! : Encoding.UTF8.GetString(r.ValueSpan);
        else
            text = buffer[..Encoding.UTF8.GetChars(r.ValueSpan, buffer)];
        var lookup = kind == IdKind.Photo ? _photoLookup : _commentLookup;
        if (!lookup.TryGetValue(text, out int id))
        {
            Problems.Add(new(at.File, at.Line, $"{field}: {what} id '{allocated ?? text.ToString()}' is not in {(kind == IdKind.Photo ? PhotosPkl : CommentsPkl)}"));
            return -1;
        }
        if (id == 0)
        {
            Problems.Add(new(at.File, at.Line, $"{field}: the pad id '{Catalog.PadId}' is used as a {what}"));
            return -1;
        }
        return id;
    }

    /// <summary>Reads a JSON list of ids into <paramref name="into"/>; false (with problems) if it isn't one or holds bad ids.</summary>
    private bool ReadIds(ref Utf8JsonReader r, IdKind kind, List<int> into, LineRef at, string field)
    {
        if (r.TokenType != JsonTokenType.StartArray)
        {
            Problems.Add(new(at.File, at.Line, $"{field}: expected a list of {(kind == IdKind.Photo ? "video" : "comment")} ids, found {Describe(r.TokenType)}"));
            r.Skip();
            return false;
        }
        bool ok = true;
        while (r.Read() && r.TokenType != JsonTokenType.EndArray)
        {
            int id = ReadId(ref r, kind, at, field);
            if (id < 0) ok = false;
            else into.Add(id);
        }
        return ok;
    }

    private static string Describe(JsonTokenType t) => t switch
    {
        JsonTokenType.StartArray => "a list",
        JsonTokenType.StartObject => "an object",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => t.ToString(),
    };

    // ---------------------------------------------------------------- example files

    private sealed class Scratch
    {
        public readonly List<int> Photos = [], EntryPhotos = [], EntryLengths = [], EntryComments = [], Positives = [];
        public void Clear()
        {
            Photos.Clear(); EntryPhotos.Clear(); EntryLengths.Clear(); EntryComments.Clear(); Positives.Clear();
        }
    }

    private readonly Scratch _s = new();
    private readonly Dictionary<string, string> _userIds = new(StringComparer.Ordinal);

    private void ReadExamples(TaskKind task, Split split)
    {
        var file = TaskNames.FileName(task, split);
        var path = Path.Combine(_dir, file);
        var builder = new ExampleSetBuilder(task, split);
        var lineNumbers = new List<int>();
        if (File.Exists(path))
        {
            JsonLines.ForEach(path, (line, number) =>
            {
                if (ReadExample(line, task, new LineRef(file, number), builder)) lineNumbers.Add(number);
            }, Advance);
        }
        Sets.Add(builder.Build());
        Lines[(task, split)] = [.. lineNumbers];
    }

    private bool ReadExample(ReadOnlySpan<byte> line, TaskKind task, LineRef at, ExampleSetBuilder builder)
    {
        var s = _s;
        s.Clear();
        int problemsBefore = Problems.Count;
        string? user = null;
        int target = -1;
        bool hasUser = false, hasTarget = false, hasPhotos = false, hasComments = false, hasPositives = false;
        try
        {
            var r = new Utf8JsonReader(line);
            if (!r.Read() || r.TokenType != JsonTokenType.StartObject)
            {
                Problems.Add(new(at.File, at.Line, "expected a JSON object"));
                return false;
            }
            while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
            {
                if (r.ValueTextEquals("user_id"u8))
                {
                    r.Read();
                    hasUser = true;
                    if (r.TokenType is JsonTokenType.String or JsonTokenType.Number)
                        user = Intern(r.TokenType == JsonTokenType.String ? r.GetString()! : Encoding.UTF8.GetString(r.ValueSpan));
                    else { Problems.Add(new(at.File, at.Line, $"user_id: expected an int or string, found {Describe(r.TokenType)}")); r.Skip(); }
                }
                else if (r.ValueTextEquals("target_photo"u8))
                {
                    r.Read();
                    hasTarget = true;
                    target = ReadId(ref r, IdKind.Photo, at, "target_photo");
                }
                else if (r.ValueTextEquals("photo_inter_his"u8))
                {
                    r.Read();
                    hasPhotos = true;
                    ReadIds(ref r, IdKind.Photo, s.Photos, at, "photo_inter_his");
                }
                else if (r.ValueTextEquals("comment_inter_his"u8))
                {
                    r.Read();
                    hasComments = true;
                    ReadCommentHistory(ref r, at);
                }
                else if (r.ValueTextEquals("pos_comments"u8) && task == TaskKind.CommRank)
                {
                    r.Read();
                    hasPositives = true;
                    ReadIds(ref r, IdKind.Comment, s.Positives, at, "pos_comments");
                }
                else { r.Read(); r.Skip(); }
            }
            if (r.Read()) Problems.Add(new(at.File, at.Line, "unexpected content after the JSON object"));
        }
        catch (JsonException e)
        {
            Problems.Add(new(at.File, at.Line, $"malformed JSON: {JsonMessage(e)}"));
            return false;
        }
        if (!hasUser) Problems.Add(new(at.File, at.Line, "missing field \"user_id\""));
        if (!hasTarget) Problems.Add(new(at.File, at.Line, "missing field \"target_photo\""));
        if (!hasPhotos) Problems.Add(new(at.File, at.Line, "missing field \"photo_inter_his\""));
        if (!hasComments) Problems.Add(new(at.File, at.Line, "missing field \"comment_inter_his\""));
        if (task == TaskKind.CommRank)
        {
            if (!hasPositives) Problems.Add(new(at.File, at.Line, "missing field \"pos_comments\""));
            else if (s.Positives.Count == 0) Problems.Add(new(at.File, at.Line, "pos_comments is empty"));
            if (target > 0)
            {
                var list = ListOf(target);
                foreach (int c in s.Positives)
                    if (!list.Contains(c))
                        Problems.Add(new(at.File, at.Line, $"pos_comments: comment '{_commentIds[c]}' is not in the comment_list of target_photo '{_photoIds[target]}'"));
            }
        }
        if (hasPhotos && hasComments && s.Photos.Count == 0 && s.EntryPhotos.Count == 0 && Problems.Count == problemsBefore)
            Problems.Add(new(at.File, at.Line, "both histories are empty"));
        if (Problems.Count != problemsBefore) return false;
        builder.Add(user!, target, CollectionsMarshal.AsSpan(s.Photos), CollectionsMarshal.AsSpan(s.EntryPhotos),
            CollectionsMarshal.AsSpan(s.EntryLengths), CollectionsMarshal.AsSpan(s.EntryComments), CollectionsMarshal.AsSpan(s.Positives));
        return true;
    }

    private ReadOnlySpan<int> ListOf(int photo) =>
        _listComments.AsSpan(_listOffsets[photo], _listOffsets[photo + 1] - _listOffsets[photo]);

    private string Intern(string user) => _userIds.TryGetValue(user, out var known) ? known : _userIds[user] = user;

    /// <summary><c>[[video...], [[comment...]...]]</c>: two parallel lists.</summary>
    private void ReadCommentHistory(ref Utf8JsonReader r, LineRef at)
    {
        const string field = "comment_inter_his";
        if (r.TokenType != JsonTokenType.StartArray)
        {
            Problems.Add(new(at.File, at.Line, $"{field}: expected [[video ids], [[comment ids]...]], found {Describe(r.TokenType)}"));
            r.Skip();
            return;
        }
        int part = 0;
        while (r.Read() && r.TokenType != JsonTokenType.EndArray)
        {
            if (part == 0) ReadIds(ref r, IdKind.Photo, _s.EntryPhotos, at, field + "[0]");
            else if (part == 1)
            {
                if (r.TokenType != JsonTokenType.StartArray)
                {
                    Problems.Add(new(at.File, at.Line, $"{field}[1]: expected a list of comment-id lists, found {Describe(r.TokenType)}"));
                    r.Skip();
                }
                else
                    while (r.Read() && r.TokenType != JsonTokenType.EndArray)
                    {
                        int before = _s.EntryComments.Count;
                        bool ok = ReadIds(ref r, IdKind.Comment, _s.EntryComments, at, $"{field}[1][{_s.EntryLengths.Count}]");
                        _s.EntryLengths.Add(_s.EntryComments.Count - before);
                        if (ok && _s.EntryComments.Count == before)
                            Problems.Add(new(at.File, at.Line, $"{field}[1][{_s.EntryLengths.Count - 1}]: entry has no comments"));
                    }
            }
            else r.Skip();
            part++;
        }
        if (part != 2)
            Problems.Add(new(at.File, at.Line, $"{field}: expected exactly two parallel lists, found {part}"));
        else if (_s.EntryPhotos.Count != _s.EntryLengths.Count)
            Problems.Add(new(at.File, at.Line, $"{field}: {_s.EntryPhotos.Count} videos but {_s.EntryLengths.Count} comment lists (the lists must be parallel)"));
    }

    // ---------------------------------------------------------------- cross-split checks

    /// <summary>
    /// Per user and task: a Rec val/test target already present in a Rec train video history, or a CommRank test
    /// positive already present in a CommRank train comment history. Without interaction times this is not leakage by
    /// itself — users meet videos and comments again (MODEL.md §1.1) — so these are warnings, not problems; real
    /// leakage (a history holding interactions after its target's time) is ruled out where times are known, by the
    /// KuaiComt import building every history from strictly earlier interactions.
    /// </summary>
    private void CheckLeakage()
    {
        var users = new Dictionary<string, int>(StringComparer.Ordinal);
        int UserOf(string u) => users.TryGetValue(u, out int i) ? i : users[u] = users.Count;
        static long Key(int user, int item) => ((long)user << 32) | (uint)item;

        // Collect the few (user, item) pairs that must not be seen in training, then scan the training histories once.
        var recTrain = Set(TaskKind.Rec, Split.Train);
        var heldOut = new Dictionary<long, int>(); // → first training line that shows it (0 = none)
        foreach (var split in new[] { Split.Val, Split.Test })
        {
            var set = Set(TaskKind.Rec, split);
            for (int i = 0; i < set.Count; i++) heldOut.TryAdd(Key(UserOf(set.UserIds[i]), set.TargetPhoto[i]), 0);
        }
        for (int i = 0; i < recTrain.Count; i++)
        {
            int u = UserOf(recTrain.UserIds[i]);
            foreach (int p in recTrain.PhotoHistoryOf(i))
                if (heldOut.TryGetValue(Key(u, p), out int line) && line == 0) heldOut[Key(u, p)] = Lines[(TaskKind.Rec, Split.Train)][i];
        }
        foreach (var split in new[] { Split.Val, Split.Test })
        {
            var set = Set(TaskKind.Rec, split);
            for (int i = 0; i < set.Count; i++)
                if (heldOut[Key(UserOf(set.UserIds[i]), set.TargetPhoto[i])] is > 0 and var trainLine)
                    Warnings.Add(new(TaskNames.FileName(TaskKind.Rec, split), Lines[(TaskKind.Rec, split)][i],
                        $"repeat interaction: target video '{_photoIds[set.TargetPhoto[i]]}' of user '{set.UserIds[i]}' is already in the video history of {TaskNames.FileName(TaskKind.Rec, Split.Train)}:{trainLine}"));
        }

        var test = Set(TaskKind.CommRank, Split.Test);
        var crTrain = Set(TaskKind.CommRank, Split.Train);
        heldOut.Clear();
        for (int i = 0; i < test.Count; i++)
            foreach (int c in test.PositivesOf(i)) heldOut.TryAdd(Key(UserOf(test.UserIds[i]), c), 0);
        for (int i = 0; i < crTrain.Count; i++)
        {
            int u = UserOf(crTrain.UserIds[i]);
            var (start, end) = crTrain.CommentEntriesOf(i);
            for (int e = start; e < end; e++)
                foreach (int c in crTrain.CommentsOfEntry(e))
                    if (heldOut.TryGetValue(Key(u, c), out int line) && line == 0) heldOut[Key(u, c)] = Lines[(TaskKind.CommRank, Split.Train)][i];
        }
        for (int i = 0; i < test.Count; i++)
            foreach (int c in test.PositivesOf(i))
                if (heldOut[Key(UserOf(test.UserIds[i]), c)] is > 0 and var trainLine)
                    Warnings.Add(new(TaskNames.FileName(TaskKind.CommRank, Split.Test), Lines[(TaskKind.CommRank, Split.Test)][i],
                        $"repeat interaction: positive comment '{_commentIds[c]}' of user '{test.UserIds[i]}' is already in the comment history of {TaskNames.FileName(TaskKind.CommRank, Split.Train)}:{trainLine}"));
    }

    private ExampleSet Set(TaskKind task, Split split) => Sets.First(s => s.Task == task && s.Split == split);
}

/// <summary>Streams a JSON-lines file as UTF-8 byte spans without decoding or allocating per line.</summary>
internal static class JsonLines
{
    public delegate void LineHandler(ReadOnlySpan<byte> line, int number);

    public static void ForEach(string path, LineHandler handle, Action<long>? bytesRead = null)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        var buffer = new byte[1 << 22];
        int start = 0, end = 0, number = 0, scanned = 0;
        bool first = true;
        while (true)
        {
            int n = stream.Read(buffer, end, buffer.Length - end);
            bytesRead?.Invoke(n);
            end += n;
            while (true)
            {
                int nl = buffer.AsSpan(scanned, end - scanned).IndexOf((byte)'\n');
                if (nl < 0) { scanned = end; break; }
                Emit(buffer.AsSpan(start, scanned + nl - start));
                start = scanned = scanned + nl + 1;
            }
            if (n == 0) break;
            if (start > 0)
            {
                buffer.AsSpan(start, end - start).CopyTo(buffer);
                end -= start;
                scanned -= start;
                start = 0;
            }
            else if (end == buffer.Length) Array.Resize(ref buffer, buffer.Length * 2);
        }
        if (end > start) Emit(buffer.AsSpan(start, end - start));

        void Emit(ReadOnlySpan<byte> line)
        {
            number++;
            if (first && line.StartsWith(LayoutLoader.Utf8Bom)) line = line[3..];
            first = false;
            if (line.EndsWith("\r"u8)) line = line[..^1];
            if (line.Trim(" \t"u8).IsEmpty) return;
            handle(line, number);
        }
    }
}
