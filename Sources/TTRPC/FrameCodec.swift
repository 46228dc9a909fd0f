// TTRPC: the frame codec in a NIO pipeline — bytes to TTRPCFrame (through
// Frame.swift's header parsing, so the 4 MiB limit and the refusal of unknown
// types apply) and TTRPCFrame back to bytes.
import NIOCore

/// Cuts the inbound byte stream into frames; a bad header throws, and the
/// connection's handler closes the channel (the stream cannot be resynchronised).
struct TTRPCFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = TTRPCFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let head = buffer.getBytes(at: buffer.readerIndex, length: TTRPCFrame.headerSize) else { return .needMoreData }
        let header = try TTRPCFrame.decodeHeader(head)
        guard buffer.readableBytes >= TTRPCFrame.headerSize + header.length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: TTRPCFrame.headerSize)
        let payload = buffer.readBytes(length: header.length) ?? []
        context.fireChannelRead(wrapInboundOut(
            TTRPCFrame(streamID: header.streamID, type: header.type, flags: header.flags, payload: payload)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// Writes each outbound frame whole, so responses written from several
/// handler threads never interleave on the wire.
struct TTRPCFrameEncoder: MessageToByteEncoder {
    typealias OutboundIn = TTRPCFrame

    func encode(data: TTRPCFrame, out: inout ByteBuffer) throws {
        out.writeBytes(try data.encoded())
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// The frame codec, then `handler` receiving whole frames.
    func addTTRPCHandlers(_ handler: some ChannelInboundHandler) throws {
        try addHandler(ByteToMessageHandler(TTRPCFrameDecoder()))
        try addHandler(MessageToByteHandler(TTRPCFrameEncoder()))
        try addHandler(handler)
    }
}
