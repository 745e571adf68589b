package kart.testjobs;

/**
 * A main method that fails before it builds a job, as a student's job does
 * when its configuration is wrong: kart must show this message, not the
 * wrappers the REST API puts around it.
 */
public class ThrowingJob {
    public static void main(String[] args) {
        String message = args.length > 0 ? String.join(" ", args) : "kart test job: KAFKA_BOOTSTRAP_SERVERS is not set";
        throw new IllegalStateException(message);
    }
}
