using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text;

namespace LSVCR.Core;

/// <summary>
/// SHA-256 content hashes as lower-case hex, and step keys built from them. A step key names a step by what it reads
/// (the content hashes of its inputs) and how (its options), never by paths or counts, so a host can tell "already
/// done" from "same name, different inputs" (resume, reuse, at-least-once message delivery).
/// <para>The builder (<see cref="Add(string)"/>, <see cref="AddFile"/>, <see cref="AddPath"/>, <see cref="Finish"/>) hashes
/// the content a step reads — files streamed in blocks (never loaded whole), in-memory arrays, strings. Every part is
/// length-prefixed, so the boundaries between parts count (<c>"ab" + "c"</c> ≠ <c>"a" + "bc"</c>).</para>
/// </summary>
public sealed class ContentHash : IDisposable
{
    /// <summary>SHA-256 of the bytes.</summary>
    public static string Of(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>SHA-256 of the UTF-8 bytes of the text.</summary>
    public static string Of(string text) => Of(Encoding.UTF8.GetBytes(text));

    /// <summary>SHA-256 of a stream read to its end (streamed: no whole-file buffer).</summary>
    public static async Task<string> OfStreamAsync(Stream stream, CancellationToken ct = default) =>
        Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, ct));

    /// <summary>SHA-256 of a file's bytes (streamed).</summary>
    public static async Task<string> OfFileAsync(string path, CancellationToken ct = default)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return await OfStreamAsync(stream, ct);
    }

    /// <summary>SHA-256 of a value's JSON form (System.Text.Json defaults: public properties in declaration order).</summary>
    public static string OfJson<T>(T value, JsonSerializerOptions? options = null) => Of(JsonSerializer.SerializeToUtf8Bytes(value, options));

    /// <summary>
    /// SHA-256 over the parts, each length-prefixed so boundaries count (<c>("ab","c")</c> ≠ <c>("a","bc")</c>). Null
    /// parts are hashed as absent, distinct from the empty string.
    /// </summary>
    public static string Combine(params IEnumerable<string?> parts)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        foreach (var part in parts)
        {
            if (part is null)
            {
                BinaryPrimitives.WriteInt32LittleEndian(length, -1);
                hash.AppendData(length);
                continue;
            }
            var bytes = Encoding.UTF8.GetBytes(part);
            BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
            hash.AppendData(length);
            hash.AppendData(bytes);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>
    /// The key of a step: its kind (e.g. <c>fine-tuning</c>), the content hashes of everything it reads, and the JSON
    /// of its options. Two deliveries of the same step get the same key; changing any input's content or any option
    /// changes it.
    /// </summary>
    public static string StepKey<TOptions>(string step, IEnumerable<string> inputHashes, TOptions options, JsonSerializerOptions? json = null) =>
        Combine([$"lsvcr-step/1", step, .. inputHashes, JsonSerializer.Serialize(options, json)]);

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
