package cn.gov.sh.cjrh.examples;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.format.EventFormat;
import io.cloudevents.core.provider.EventFormatProvider;
import io.cloudevents.jackson.JsonFormat;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Follows registry.certification.v1 with a consumer group of your own and prints one JSON line per applied event.
 * Arguments: groupId [idleExitSeconds]. Idempotent (event ids seen, versions only move forward), skips unknown types
 * and records it cannot read, and commits offsets after applying. Values are read as bytes and parsed with the
 * CloudEvents JSON format here, so one unreadable record is logged and skipped instead of making every poll fail.
 */
public final class CertificationConsumer {
    static final String TOPIC = "registry.certification.v1";
    static final String PREFIX = "cn.gov.sh.cjrh.registry.certification.";

    private CertificationConsumer() {
    }

    public static void main(String[] args) throws Exception {
        String group = args[0];
        long idleExitMs = args.length > 1 ? (long) (Double.parseDouble(args[1]) * 1000) : Long.MAX_VALUE;
        Properties props = Connection.fromEnvironment();
        props.put("group.id", group);
        props.put("enable.auto.commit", "false");
        props.put("auto.offset.reset", "earliest");
        props.put("isolation.level", "read_committed");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        EventFormat format = EventFormatProvider.getInstance().resolveFormat(JsonFormat.CONTENT_TYPE);

        ObjectMapper json = new ObjectMapper();
        Set<String> seen = new HashSet<>();
        Map<String, Long> versions = new HashMap<>();
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(TOPIC));
            long last = System.currentTimeMillis();
            while (System.currentTimeMillis() - last < idleExitMs) {
                ConsumerRecords<String, byte[]> records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, byte[]> r : records) {
                    last = System.currentTimeMillis();
                    CloudEvent event;
                    try {
                        event = format.deserialize(r.value());
                    } catch (RuntimeException e) {  // not a CloudEvent: log it and go on
                        System.err.printf("skipped %s:%d:%d: %s%n", r.topic(), r.partition(), r.offset(), e);
                        continue;
                    }
                    if (!event.getType().startsWith(PREFIX) || !seen.add(event.getId())) {
                        continue;
                    }
                    JsonNode data = json.readTree(event.getData().toBytes());
                    String id = data.get("id").asText();
                    long version = data.get("version").asLong();
                    if (versions.getOrDefault(id, -1L) >= version) {
                        continue;
                    }
                    versions.put(id, version);
                    Map<String, Object> line = new HashMap<>();
                    line.put("type", event.getType());
                    line.put("id", event.getId());
                    line.put("subject", event.getSubject());
                    line.put("status", data.get("status").asText());
                    line.put("version", version);
                    System.out.println(json.writeValueAsString(line));
                }
                if (!records.isEmpty()) {
                    consumer.commitSync();
                }
            }
        }
    }
}
