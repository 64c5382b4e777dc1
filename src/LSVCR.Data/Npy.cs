using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace LSVCR.Data;

/// <summary>A row-major float32 matrix, the in-memory form of an embeddings <c>.npy</c> file.</summary>
public sealed record FloatMatrix(float[] Data, int Rows, int Cols)
{
    public Span<float> Row(int r) => Data.AsSpan(r * Cols, Cols);

    /// <summary>SHA-256 of the shape and values (<see cref="LSVCR.Core.ContentHash"/>): what reuse decisions compare.</summary>
    public string ContentHash()
    {
        using var h = new ContentHash();
        return h.Add($"float32 {Rows}x{Cols}").Add(Data).Finish();
    }
}

/// <summary>
/// NumPy <c>.npy</c> (format 1.0) for 2-D little-endian float32 arrays in C order. Hand-written because no package
/// in the feed reads/writes .npy; the format is a 10-byte preamble, a padded Python-dict header and raw data.
/// </summary>
public static partial class Npy
{
    // Spelled as bytes: a "\x93NUMPY"u8 literal encodes U+0093 as the two bytes C2 93, which NumPy rejects.
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>Writes to a temporary name and renames, so a partial file never appears under <paramref name="path"/>.</summary>
    public static void Write(string path, FloatMatrix matrix)
    {
        if (matrix.Data.Length != (long)matrix.Rows * matrix.Cols)
            throw new ArgumentException($"matrix holds {matrix.Data.Length} values, not {matrix.Rows}×{matrix.Cols}");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.tmp");
        using (var stream = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            WriteTo(stream, matrix);
            stream.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    public static void WriteTo(Stream stream, FloatMatrix matrix)
    {
        var dict = string.Create(CultureInfo.InvariantCulture,
            $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({matrix.Rows}, {matrix.Cols}), }}");
        // Preamble (10 bytes) + header must be a multiple of 64, header ends with '\n' (format spec, v1.0).
        int unpadded = 10 + dict.Length + 1;
        int total = (unpadded + 63) / 64 * 64;
        var header = dict + new string(' ', total - unpadded) + "\n";
        if (header.Length > ushort.MaxValue) throw new InvalidOperationException("npy header too long for format 1.0");
        Span<byte> pre = stackalloc byte[10];
        Magic.CopyTo(pre);
        pre[6] = 1;
        pre[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(pre[8..], (ushort)header.Length);
        stream.Write(pre);
        stream.Write(Encoding.ASCII.GetBytes(header));
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("big-endian hosts are not supported");
        stream.Write(MemoryMarshal.AsBytes(matrix.Data.AsSpan()));
    }

    public static FloatMatrix Read(string path)
    {
        if (!File.Exists(path)) throw new NpyFormatException(path, "file not found");
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return ReadFrom(stream, path);
    }

    /// <summary>Reads only the shape, for validating artifacts without loading them.</summary>
    public static (int Rows, int Cols) ReadShape(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var (rows, cols, _) = ReadHeader(stream, path);
        return (rows, cols);
    }

    public static FloatMatrix ReadFrom(Stream stream, string name)
    {
        var (rows, cols, dtype) = ReadHeader(stream, name);
        long count = (long)rows * cols;
        if (count > Array.MaxLength) throw new NpyFormatException(name, $"shape ({rows}, {cols}) is too large");
        var data = new float[count];
        if (dtype == "<f4")
        {
            stream.ReadExactly(MemoryMarshal.AsBytes(data.AsSpan()));
        }
        else
        {
            var buffer = new byte[count * 8];
            stream.ReadExactly(buffer);
            for (long i = 0; i < count; i++)
                data[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(buffer.AsSpan((int)(i * 8), 8));
        }
        return new FloatMatrix(data, rows, cols);
    }

    private static (int Rows, int Cols, string Dtype) ReadHeader(Stream stream, string name)
    {
        Span<byte> pre = stackalloc byte[10];
        try { stream.ReadExactly(pre[..8]); }
        catch (EndOfStreamException) { throw new NpyFormatException(name, "file is shorter than the .npy preamble"); }
        if (!pre[..6].SequenceEqual(Magic)) throw new NpyFormatException(name, "not a .npy file (bad magic)");
        int major = pre[6];
        int headerLen;
        if (major == 1)
        {
            stream.ReadExactly(pre.Slice(8, 2));
            headerLen = BinaryPrimitives.ReadUInt16LittleEndian(pre[8..]);
        }
        else if (major is 2 or 3)
        {
            Span<byte> len = stackalloc byte[4];
            stream.ReadExactly(len);
            headerLen = checked((int)BinaryPrimitives.ReadUInt32LittleEndian(len));
        }
        else throw new NpyFormatException(name, $"unsupported .npy format version {major}.{pre[7]}");
        var headerBytes = new byte[headerLen];
        stream.ReadExactly(headerBytes);
        var header = Encoding.ASCII.GetString(headerBytes);
        var descr = DescrRegex().Match(header);
        if (!descr.Success) throw new NpyFormatException(name, "header has no 'descr'");
        var dtype = descr.Groups[1].Value;
        if (dtype is not ("<f4" or "<f8"))
            throw new NpyFormatException(name, $"dtype '{dtype}' is not supported (expected '<f4' float32)");
        if (FortranRegex().Match(header) is { Success: true } f && f.Groups[1].Value == "True")
            throw new NpyFormatException(name, "Fortran-ordered arrays are not supported");
        var shape = ShapeRegex().Match(header);
        if (!shape.Success) throw new NpyFormatException(name, "header has no 'shape'");
        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (dims.Length != 2) throw new NpyFormatException(name, $"expected a 2-D array, shape is ({shape.Groups[1].Value})");
        return (int.Parse(dims[0], CultureInfo.InvariantCulture), int.Parse(dims[1], CultureInfo.InvariantCulture), dtype);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']+)'")]
    private static partial Regex DescrRegex();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRegex();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}

public sealed class NpyFormatException(string file, string problem) : Exception($"{file}: {problem}")
{
    public string File { get; } = file;
}
