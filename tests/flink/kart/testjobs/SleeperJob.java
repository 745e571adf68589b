package kart.testjobs;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.connector.source.lib.NumberSequenceSource;
import org.apache.flink.api.java.utils.ParameterTool;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * kart's test job: runs until cancelled or stopped, taking one record every
 * 100 ms so it costs the shared test cluster next to nothing.
 *
 * <p>Arguments: {@code --job-name NAME} (the name Flink shows; default
 * "Kart Sleeper"), {@code --fail-in-open MESSAGE} (its operator throws at start,
 * so the job fails after it was submitted). Every argument becomes a global
 * job parameter, so tests can read what kart passed from /jobs/ID/config.
 */
public class SleeperJob {
    public static void main(String[] args) throws Exception {
        ParameterTool params = ParameterTool.fromArgs(args);
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.getConfig().setGlobalJobParameters(params);
        final String failure = params.get("fail-in-open", null);
        env.fromSource(new NumberSequenceSource(0, Long.MAX_VALUE), WatermarkStrategy.noWatermarks(), "sequence")
                .map(new RichMapFunction<Long, Long>() {
                    @Override
                    public void open(Configuration parameters) {
                        if (failure != null) {
                            throw new IllegalStateException(failure);
                        }
                    }

                    @Override
                    public Long map(Long value) throws Exception {
                        Thread.sleep(100);
                        return value;
                    }
                })
                .name("sleep")
                .sinkTo(new DiscardingSink<>());
        env.execute(params.get("job-name", "Kart Sleeper"));
    }
}
