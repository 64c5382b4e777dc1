namespace LSVCR.Data;

/// <summary>
/// The examples of one task and split in columnar form (internal ids only). Every variable-length list is CSR:
/// example i's video history is <c>PhotoHistory[PhotoHistoryOffsets[i]..PhotoHistoryOffsets[i+1]]</c>;
/// its comment history has entries <c>[CommentHistoryOffsets[i], CommentHistoryOffsets[i+1])</c>, entry e being the
/// video <c>CommentHistoryPhoto[e]</c> and the comments <c>CommentHistoryComments[CommentEntryOffsets[e]..CommentEntryOffsets[e+1]]</c>.
/// Histories are oldest first. <c>Positive*</c> is empty for Rec.
/// </summary>
public sealed class ExampleSet
{
    public required TaskKind Task { get; init; }
    public required Split Split { get; init; }
    public required string[] UserIds { get; init; }
    public required int[] TargetPhoto { get; init; }
    public required int[] PhotoHistoryOffsets { get; init; }
    public required int[] PhotoHistory { get; init; }
    public required int[] CommentHistoryOffsets { get; init; }
    public required int[] CommentHistoryPhoto { get; init; }
    public required int[] CommentEntryOffsets { get; init; }
    public required int[] CommentHistoryComments { get; init; }
    public required int[] PositiveOffsets { get; init; }
    public required int[] PositiveComments { get; init; }

    public int Count => TargetPhoto.Length;

    public ReadOnlySpan<int> PhotoHistoryOf(int example) =>
        PhotoHistory.AsSpan(PhotoHistoryOffsets[example], PhotoHistoryOffsets[example + 1] - PhotoHistoryOffsets[example]);

    /// <summary>Global entry indices [start, end) of the example's comment history.</summary>
    public (int Start, int End) CommentEntriesOf(int example) => (CommentHistoryOffsets[example], CommentHistoryOffsets[example + 1]);

    public ReadOnlySpan<int> CommentsOfEntry(int entry) =>
        CommentHistoryComments.AsSpan(CommentEntryOffsets[entry], CommentEntryOffsets[entry + 1] - CommentEntryOffsets[entry]);

    public ReadOnlySpan<int> PositivesOf(int example) =>
        PositiveComments.AsSpan(PositiveOffsets[example], PositiveOffsets[example + 1] - PositiveOffsets[example]);

    public static ExampleSet Empty(TaskKind task, Split split) => new ExampleSetBuilder(task, split).Build();
}

/// <summary>Appends examples one at a time into the CSR arrays of an <see cref="ExampleSet"/>.</summary>
public sealed class ExampleSetBuilder(TaskKind task, Split split)
{
    private readonly List<string> _users = [];
    private readonly List<int> _target = [];
    private readonly List<int> _phOff = [0];
    private readonly List<int> _ph = [];
    private readonly List<int> _chOff = [0];
    private readonly List<int> _chPhoto = [];
    private readonly List<int> _entryOff = [0];
    private readonly List<int> _chComments = [];
    private readonly List<int> _posOff = [0];
    private readonly List<int> _pos = [];

    public int Count => _target.Count;

    /// <param name="commentHistory">Entries oldest first: the video and the comments interacted with under it.</param>
    public void Add(string userId, int targetPhoto, ReadOnlySpan<int> photoHistory,
        IEnumerable<(int Photo, IReadOnlyList<int> Comments)> commentHistory, ReadOnlySpan<int> positives = default)
    {
        _users.Add(userId);
        _target.Add(targetPhoto);
        foreach (int p in photoHistory) _ph.Add(p);
        _phOff.Add(_ph.Count);
        foreach (var (photo, comments) in commentHistory)
        {
            _chPhoto.Add(photo);
            _chComments.AddRange(comments);
            _entryOff.Add(_chComments.Count);
        }
        _chOff.Add(_chPhoto.Count);
        foreach (int c in positives) _pos.Add(c);
        _posOff.Add(_pos.Count);
    }

    /// <summary>
    /// Allocation-free form for bulk loaders: the comment history is given as parallel spans (entry videos, the
    /// number of comments per entry, and all entry comments concatenated).
    /// </summary>
    public void Add(string userId, int targetPhoto, ReadOnlySpan<int> photoHistory, ReadOnlySpan<int> commentPhotos,
        ReadOnlySpan<int> entryLengths, ReadOnlySpan<int> entryComments, ReadOnlySpan<int> positives)
    {
        if (commentPhotos.Length != entryLengths.Length)
            throw new ArgumentException($"{commentPhotos.Length} comment-history videos but {entryLengths.Length} entry lengths");
        _users.Add(userId);
        _target.Add(targetPhoto);
        _ph.AddRange(photoHistory);
        _phOff.Add(_ph.Count);
        int taken = 0;
        for (int e = 0; e < commentPhotos.Length; e++)
        {
            _chPhoto.Add(commentPhotos[e]);
            _chComments.AddRange(entryComments.Slice(taken, entryLengths[e]));
            taken += entryLengths[e];
            _entryOff.Add(_chComments.Count);
        }
        if (taken != entryComments.Length)
            throw new ArgumentException($"entry lengths sum to {taken} but {entryComments.Length} comments were given");
        _chOff.Add(_chPhoto.Count);
        _pos.AddRange(positives);
        _posOff.Add(_pos.Count);
    }

    public ExampleSet Build() => new()
    {
        Task = task,
        Split = split,
        UserIds = [.. _users],
        TargetPhoto = [.. _target],
        PhotoHistoryOffsets = [.. _phOff],
        PhotoHistory = [.. _ph],
        CommentHistoryOffsets = [.. _chOff],
        CommentHistoryPhoto = [.. _chPhoto],
        CommentEntryOffsets = [.. _entryOff],
        CommentHistoryComments = [.. _chComments],
        PositiveOffsets = [.. _posOff],
        PositiveComments = [.. _pos],
    };
}
