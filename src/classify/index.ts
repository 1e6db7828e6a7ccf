/** Protocol sniffing by content: the library API of the classify core. */
export type { Classification, ClassificationFields, ClassificationOutcome, ClassifiedAs, SniffedProtocol, Sniffer, SniffVerdict } from "./types";
// For custom sniffers: the shared "no" and "need more" answers and the match builder.
export { NO as SNIFF_NO, MORE as SNIFF_MORE, match as sniffMatch } from "./types";
export { classifyBytes, classifierLimits, DEFAULT_SNIFFERS, runSniffers, sniffersWithFingerprints, StreamClassifier } from "./classifier";
export type { FingerprintSet } from "./fingerprint";
export type { ClassifierLimits, ClassifierOptions } from "./classifier";
export { compileRouter, compileHostPattern, fingerprintsUsed, hostWithoutPort, CLASSIFIED_AS } from "./rules";
export type { ClassifyRuleSpec, RouteInput, RouteVerdict, Router } from "./rules";
export { moreBytesSource, setMoreBytesSource } from "./more-bytes";
export type { MoreBytesSource } from "./more-bytes";
export { parseClientHello, sniffTls, tlsSniffer, tlsSnifferWith, tlsVersionName } from "./tls";
export { sniffHttp1, http1Sniffer } from "./http1";
export { sniffHttp2, http2Sniffer } from "./http2";
export { decodeHeaderBlock, huffmanDecode } from "./hpack";
export type { HeaderField } from "./hpack";
export { sniffSsh, sshSniffer } from "./ssh";
export { sniffMqtt, mqttSniffer } from "./mqtt";
export { sniffRedis, redisSniffer } from "./redis";
export { sniffPostgresql, postgresqlSniffer } from "./postgresql";
export { sniffKafka, kafkaSniffer } from "./kafka";
export { sniffDubbo, dubboSniffer } from "./dubbo";
export { sniffSocks4, sniffSocks5, socks4Sniffer, socks5Sniffer } from "./socks";
export { sniffProxy, proxySniffer } from "./proxy";
export { sniffDns, sniffDnsDatagram, dnsSniffer, dnsTypeName } from "./dns";
export { DatagramClassifier, classifyDatagrams } from "./datagram";
export type { DatagramClassifierOptions } from "./datagram";
export { decryptQuicInitial, quicCryptoFrames, quicInitialKeys, QuicInitialReader, QUIC_MAX_CRYPTO } from "./quic";
export type { QuicCryptoFrame, QuicInitialKeys, QuicInitialPacket, QuicVersion } from "./quic";
