using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace LSVCR.Core;

/// <summary>
/// SHA-256 over the content a step reads — files streamed in blocks (never loaded whole), in-memory arrays, strings —
/// as lower-case hex. Resume and reuse decisions compare these, never paths, sizes or counts: a step reruns exactly
/// when something it reads has changed. Every part is length-prefixed, so the boundaries between parts count
/// (<c>"ab" + "c"</c> ≠ <c>"a" + "bc"</c>).
/// </summary>
public sealed class ContentHash : IDisposable
{
    private const int BlockBytes = 1 << 20;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);

    /// <summary>Adds a string (UTF-8).</summary>
    public ContentHash Add(string text) => AddBytes(Encoding.UTF8.GetBytes(text));

    /// <summary>Adds the raw bytes of an array of plain values (ints, floats, …), little-endian as in memory.</summary>
    public ContentHash Add<T>(ReadOnlySpan<T> values) where T : unmanaged => AddBytes(MemoryMarshal.AsBytes(values));

    public ContentHash Add<T>(T[] values) where T : unmanaged => Add<T>(values.AsSpan());

    /// <summary>Adds a list of strings (count, then each one).</summary>
    public ContentHash Add(IReadOnlyList<string> texts)
    {
        Length(texts.Count);
        foreach (var t in texts) Add(t);
        return this;
    }

    /// <summary>Adds a file's bytes, streamed.</summary>
    public ContentHash AddFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, BlockBytes, FileOptions.SequentialScan);
        Length(stream.Length);
        var buffer = new byte[Math.Min(BlockBytes, Math.Max(1, stream.Length))];
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0) _hash.AppendData(buffer, 0, read);
        return this;
    }

    /// <summary>Adds every file under a folder (relative path with '/' separators, then content), in ordinal path order.</summary>
    public ContentHash AddDirectory(string dir)
    {
        var files = Directory.GetFiles(dir, "*", SearchOption.AllDirectories)
            .Select(f => (Relative: Path.GetRelativePath(dir, f).Replace('\\', '/'), Full: f))
            .OrderBy(f => f.Relative, StringComparer.Ordinal).ToArray();
        Length(files.Length);
        foreach (var (relative, full) in files) Add(relative).AddFile(full);
        return this;
    }

    /// <summary>Adds a file, or a folder's files when <paramref name="path"/> is a folder.</summary>
    public ContentHash AddPath(string path) => Directory.Exists(path) ? Add("dir").AddDirectory(path) : Add("file").AddFile(path);

    /// <summary>The hash of everything added so far (64 hex digits); the builder starts over.</summary>
    public string Finish() => Convert.ToHexStringLower(_hash.GetHashAndReset());

    public void Dispose() => _hash.Dispose();

    /// <summary>The hash of one file's bytes, streamed (plain SHA-256 of the file, as <c>sha256sum</c> prints it).</summary>
    public static string OfFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, BlockBytes, FileOptions.SequentialScan);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>The hash of a file or a folder's files (see <see cref="AddPath"/>).</summary>
    public static string OfPath(string path)
    {
        using var h = new ContentHash();
        return h.AddPath(path).Finish();
    }

    /// <summary>The hash of a list of parts (e.g. other hashes and an options JSON).</summary>
    public static string Of(params string[] parts)
    {
        using var h = new ContentHash();
        return h.Add(parts).Finish();
    }

    private ContentHash AddBytes(ReadOnlySpan<byte> bytes)
    {
        Length(bytes.Length);
        _hash.AppendData(bytes);
        return this;
    }

    private void Length(long n)
    {
        Span<byte> prefix = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(prefix, n);
        _hash.AppendData(prefix);
    }
}
