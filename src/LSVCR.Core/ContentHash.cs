using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace LSVCR.Core;

/// <summary>
/// SHA-256 content hashes as lower-case hex, and step keys built from them. A step key names a step by what it reads
/// (the content hashes of its inputs) and how (its options), never by paths or counts, so a host can tell "already
/// done" from "same name, different inputs" (resume, reuse, at-least-once message delivery).
/// </summary>
public static class ContentHash
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
}
