package cn.gov.sh.cjrh.examples;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.message.Encoding;
import io.cloudevents.jackson.JsonFormat;
import io.cloudevents.kafka.CloudEventSerializer;
import java.net.URI;
import java.time.OffsetDateTime;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Sends one position to municipal.talent-demand.v1 as a structured-mode CloudEvent keyed by its external id, and
 * prints the event id. Arguments: externalId employerUscc [eventId]. Resend the same eventId to retry the same record.
 */
public final class TalentDemandProducer {
    static final String TOPIC = "municipal.talent-demand.v1";
    static final String TYPE = "cn.gov.sh.cjrh.municipal.talent_demand.posted";

    private TalentDemandProducer() {
    }

    public static void main(String[] args) throws Exception {
        String externalId = args[0];
        String uscc = args[1];
        String eventId = args.length > 2 ? args[2] : UUID.randomUUID().toString();

        Map<String, Object> data = new LinkedHashMap<>();
        data.put("external_id", externalId);
        data.put("employer_uscc", uscc);
        data.put("employer_name", "上海临港经济发展（集团）有限公司");
        data.put("title", "设备维护技术员");
        data.put("skills", List.of("PLC编程", "电气维修"));
        data.put("industry", "integrated_circuits");
        data.put("district", "lingang");
        data.put("headcount", 8);
        data.put("deadline", "2030-06-30T18:00:00+08:00");

        CloudEvent event = CloudEventBuilder.v1()
                .withId(eventId)
                .withSource(URI.create("//rsj.sh.gov.cn/talent-demand"))
                .withType(TYPE)
                .withSubject(externalId)
                .withTime(OffsetDateTime.now())
                .withDataContentType("application/json")
                .withData(new ObjectMapper().writeValueAsBytes(data))
                .build();

        Properties props = Connection.fromEnvironment();
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", CloudEventSerializer.class.getName());
        props.put(CloudEventSerializer.ENCODING_CONFIG, Encoding.STRUCTURED);
        props.put(CloudEventSerializer.EVENT_FORMAT_CONFIG, JsonFormat.CONTENT_TYPE);
        props.put("acks", "all");
        props.put("enable.idempotence", "true");
        props.put("max.request.size", Connection.MAX_RECORD_BYTES);
        try (KafkaProducer<String, CloudEvent> producer = new KafkaProducer<>(props)) {
            producer.send(new ProducerRecord<>(TOPIC, externalId, event)).get();
        }
        System.out.println(eventId);
    }
}
