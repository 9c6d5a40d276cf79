package cn.gov.sh.cjrh.examples;

import java.util.Map;
import java.util.Properties;

/**
 * Kafka connection settings of a municipal platform, from the environment (docs/integration-guide.md):
 * KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092), KAFKA_SECURITY_PROTOCOL (PLAINTEXT | SASL_SSL, default PLAINTEXT),
 * KAFKA_SASL_MECHANISM (default SCRAM-SHA-512), KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE (PEM).
 */
final class Connection {
    /** The largest record the platform takes, in bytes (max.message.bytes of every topic in asyncapi.yaml). */
    static final int MAX_RECORD_BYTES = 2 * 1024 * 1024;

    private Connection() {
    }

    static Properties fromEnvironment() {
        Map<String, String> env = System.getenv();
        Properties p = new Properties();
        p.put("bootstrap.servers", env.getOrDefault("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"));
        String protocol = env.getOrDefault("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").toUpperCase();
        p.put("security.protocol", protocol);
        if (protocol.startsWith("SASL_")) {
            String mechanism = env.getOrDefault("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512");
            p.put("sasl.mechanism", mechanism);
            String module = mechanism.startsWith("SCRAM")
                    ? "org.apache.kafka.common.security.scram.ScramLoginModule"
                    : "org.apache.kafka.common.security.plain.PlainLoginModule";
            p.put("sasl.jaas.config", String.format("%s required username=\"%s\" password=\"%s\";", module,
                    env.get("KAFKA_SASL_USERNAME"), env.get("KAFKA_SASL_PASSWORD")));
        }
        if (protocol.endsWith("SSL") && env.get("KAFKA_SSL_CAFILE") != null) {
            p.put("ssl.truststore.type", "PEM");
            p.put("ssl.truststore.location", env.get("KAFKA_SSL_CAFILE"));
        }
        return p;
    }
}
